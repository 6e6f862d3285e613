"""Client traffic to the lab's AI endpoints from background threads, counting every answer that was not whole.

Tests, benchmarks and the demo use it to prove that an operation (a drain, a failover, a rollout) costs the
clients nothing, or to measure what it costs.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from lab.inventory import LAB_AUTH_HEADERS

PROMPT = "What is the capital of France?"


def tags(client, url):
    return client.get(url + "/api/tags").status_code == 200


def generate(client, url, tokens=8):
    answer = client.post(url + "/api/generate", json={"model": "assistant", "prompt": PROMPT, "stream": False,
                                                      "options": {"num_predict": tokens}})
    return answer.status_code == 200 and answer.json().get("done") is True


def generate_streamed(client, url, tokens=8):
    body = {"model": "assistant", "prompt": PROMPT, "stream": True, "options": {"num_predict": tokens}}
    with client.stream("POST", url + "/api/generate", json=body) as answer:
        events = [json.loads(line) for line in answer.iter_lines() if line.strip()]
    return answer.status_code == 200 and bool(events) and events[-1].get("done") is True


def chat(client, url, tokens=8):
    """An OpenAI-style chat completion (vLLM's API, also Ollama's /v1): whole when it says why it finished."""
    answer = client.post(url + "/v1/chat/completions", json={
        "model": "assistant", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens})
    return answer.status_code == 200 and answer.json()["choices"][0].get("finish_reason") is not None


def chat_streamed(client, url, tokens=8):
    """The same streamed: whole when the events end with a finish reason and ``data: [DONE]``."""
    body = {"model": "assistant", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
            "stream": True}
    with client.stream("POST", url + "/v1/chat/completions", json=body) as answer:
        events = [line.removeprefix("data: ") for line in answer.iter_lines() if line.startswith("data: ")]
    finished = [json.loads(event) for event in events[:-1]]
    return (answer.status_code == 200 and events[-1:] == ["[DONE]"]
            and any(choice.get("finish_reason") for event in finished for choice in event.get("choices", [])))


REQUESTS = {"tags": (tags,), "generate": (generate,), "mixed": (generate, generate_streamed),
            "openai": (chat, chat_streamed)}


class Traffic:
    """``workers`` threads sending ``kind`` requests to ``url`` back to back (or at ``rate`` per second each).

    ``kind`` is ``tags`` (GET /api/tags), ``generate`` or ``mixed`` (workers alternate non-streamed and
    streamed generations of the ``assistant`` alias), or ``openai`` (the same alternation as chat completions on
    /v1/chat/completions, for vLLM). With ``fresh_connections`` every request opens a new
    connection, as most short-lived clients do. Requests carry the lab's API key unless ``headers`` says
    otherwise. ``failures`` holds ``(monotonic time, what went wrong)``,
    ``latencies`` ``(monotonic time at the end, seconds)`` of every whole answer.
    """

    def __init__(self, url, kind="tags", *, workers=1, rate=None, fresh_connections=False, timeout=30.0,
                 headers=None):
        self.url = url
        self._headers = LAB_AUTH_HEADERS if headers is None else headers
        self.ok = 0
        self.failures = []
        self.latencies = []
        self._senders = REQUESTS[kind]
        self._interval = 1.0 / rate if rate else 0.0
        self._fresh = fresh_connections
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(self._senders[index % len(self._senders)],),
                                          daemon=True) for index in range(workers)]

    @property
    def sent(self):
        return self.ok + len(self.failures)

    def _record(self, passed, problem=None, seconds=0.0):
        with self._lock:
            if passed:
                self.ok += 1
                self.latencies.append((time.monotonic(), seconds))
            else:
                self.failures.append((time.monotonic(), problem or "incomplete answer"))

    def _send(self, client, sender):
        started = time.monotonic()
        try:
            self._record(sender(client, self.url), seconds=time.monotonic() - started)
        except (httpx.HTTPError, ValueError) as exc:
            self._record(False, repr(exc))

    def _work(self, sender):
        next_at = time.monotonic()
        client = None if self._fresh else httpx.Client(timeout=self._timeout, headers=self._headers)
        try:
            while not self._stop.is_set():
                if self._fresh:
                    with httpx.Client(timeout=self._timeout, headers=self._headers) as fresh:
                        self._send(fresh, sender)
                else:
                    self._send(client, sender)
                next_at += self._interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if client is not None:
                client.close()

    def wait_for_answers(self, count, timeout=60.0):
        """Block until ``count`` more requests have succeeded; False when ``timeout`` passes first."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(self._timeout, 10))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
