# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A typed client for Ollama's REST API, over the collection's one HTTP client.

Answers are checked for the fields this collection relies on, so a proxy or a different server that
answers 200 with the wrong shape fails with the field at fault instead of a KeyError later.
"""

from __future__ import annotations

import time

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    HttpStatusError,
    MalformedResponse,
    drop_none,
    require_field,
)

DEFAULT_URL = "http://127.0.0.1:11434"
MODEL_DETAIL_FIELDS = ("format", "family", "families", "parameter_size", "quantization_level", "parent_model")


def split_model_name(name):
    """``(model, tag)`` with Ollama's default tag ``latest``; a registry port is not taken for a tag."""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        model, tag = name.rsplit(":", 1)
        return model, tag
    return name, "latest"


def canonical_model_name(name):
    """The name as ``/api/tags`` lists it: with an explicit tag."""
    model, tag = split_model_name(name)
    return "%s:%s" % (model, tag)


def normalize_digest(digest):
    """A digest as ``/api/tags`` gives it: lower-case hex without the ``sha256:`` prefix."""
    text = digest.strip().lower()
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def is_sha256_hex(text):
    return len(text) == 64 and all(char in "0123456789abcdef" for char in text)


def keep_alive_value(text):
    """Ollama takes keep_alive as seconds (a number) or a duration string (``5m``, ``-1``)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


class PullProgress:
    """Byte counts, duration and throughput of one pull, from its progress events."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._started = clock()
        self._seconds = None
        self._layers = {}

    def record(self, event):
        digest, completed = event.get("digest"), event.get("completed")
        if isinstance(digest, str) and isinstance(completed, int):
            self._layers[digest] = max(completed, self._layers.get(digest, 0))

    def finish(self):
        self._seconds = self._clock() - self._started

    def summary(self):
        seconds = self._seconds if self._seconds is not None else self._clock() - self._started
        transferred = sum(self._layers.values())
        return {
            "bytes": transferred,
            "layers": len(self._layers),
            "seconds": round(seconds, 3),
            "bytes_per_second": int(transferred / seconds) if seconds > 0 else 0,
        }


def model_from_tags(entry, where):
    name = require_field(entry, "name", str, where)
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    return {
        "name": name,
        "model": entry.get("model", name),
        "digest": require_field(entry, "digest", str, where),
        "size": require_field(entry, "size", int, where),
        "modified_at": entry.get("modified_at"),
        "details": dict((key, details[key]) for key in MODEL_DETAIL_FIELDS if key in details),
    }


def processor_split(size, size_vram):
    """What ``ollama ps`` shows in its PROCESSOR column."""
    if not size:
        return "unknown"
    if size_vram >= size:
        return "100% GPU"
    if size_vram <= 0:
        return "100% CPU"
    gpu = round(100.0 * size_vram / size)
    return "%d%%/%d%% CPU/GPU" % (100 - gpu, gpu)


def loaded_model_from_ps(entry, where):
    name = require_field(entry, "name", str, where)
    size = require_field(entry, "size", int, where)
    size_vram = entry.get("size_vram") if isinstance(entry.get("size_vram"), int) else 0
    return {
        "name": name,
        "model": entry.get("model", name),
        "digest": require_field(entry, "digest", str, where),
        "size": size,
        "size_vram": size_vram,
        "processor": processor_split(size, size_vram),
        "expires_at": entry.get("expires_at"),
        "context_length": entry.get("context_length"),
    }


class OllamaClient:
    """Ollama's API. Methods raise ``ApiError`` subclasses from ``http`` on any failure."""

    def __init__(self, http):
        self.http = http

    def _where(self, path):
        return "GET %s" % self.http.url_for(path)

    def version(self):
        return require_field(self.http.get_json("/api/version"), "version", str, self._where("/api/version"))

    def tags(self):
        where = self._where("/api/tags")
        entries = require_field(self.http.get_json("/api/tags"), "models", list, where)
        return [model_from_tags(entry, where) for entry in entries]

    def ps(self):
        where = self._where("/api/ps")
        entries = require_field(self.http.get_json("/api/ps"), "models", list, where)
        return [loaded_model_from_ps(entry, where) for entry in entries]

    def digests(self):
        """``{name: digest}`` of every model on disk, names with their explicit tag."""
        return dict((canonical_model_name(model["name"]), normalize_digest(model["digest"])) for model in self.tags())

    def loaded_digests(self):
        return set(normalize_digest(model["digest"]) for model in self.ps())

    def show(self, model, verbose=False):
        return self.http.post_json("/api/show", {"model": model, "verbose": verbose})

    def pull(self, model, insecure=False):
        """Yield Ollama's pull progress events; raise unless the stream ends with ``success``."""
        last = None
        for event in self.http.stream_ndjson("POST", "/api/pull", {"model": model, "insecure": insecure,
                                                                   "stream": True}):
            last = event
            yield event
        if not last or last.get("status") != "success":
            raise MalformedResponse("POST %s: the pull of %s ended without a 'success' event (last event: %r)"
                                    % (self.http.url_for("/api/pull"), model, last))

    def copy(self, source, destination):
        self.http.request("POST", "/api/copy", json_body={"source": source, "destination": destination})

    def delete(self, model):
        """Delete a model; False when it was not there."""
        try:
            self.http.request("DELETE", "/api/delete", json_body={"model": model})
        except HttpStatusError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def load(self, model, keep_alive=None):
        """Load a model into memory without generating: an empty prompt (an empty input for embedding models)."""
        capabilities = self.show(model).get("capabilities") or ["completion"]
        if "completion" not in capabilities and "embedding" in capabilities:
            return self.embed(model, "", keep_alive=keep_alive)
        return self.generate(model, "", keep_alive=keep_alive)

    def _inference(self, path, body, stream):
        if stream:
            return self.http.stream_ndjson("POST", path, dict(body, stream=True))
        answer = self.http.post_json(path, dict(body, stream=False))
        if require_field(answer, "done", bool, "POST %s" % self.http.url_for(path)) is not True:
            raise MalformedResponse("POST %s: the answer is not final ('done' is false)" % self.http.url_for(path))
        return answer

    def generate(self, model, prompt, options=None, keep_alive=None, stream=False):
        body = drop_none(model=model, prompt=prompt, options=options, keep_alive=keep_alive)
        return self._inference("/api/generate", body, stream)

    def chat(self, model, messages, options=None, keep_alive=None, stream=False):
        body = drop_none(model=model, messages=messages, options=options, keep_alive=keep_alive)
        return self._inference("/api/chat", body, stream)

    def embed(self, model, inputs, keep_alive=None):
        answer = self.http.post_json("/api/embed", drop_none(model=model, input=inputs, keep_alive=keep_alive))
        require_field(answer, "embeddings", list, "POST %s" % self.http.url_for("/api/embed"))
        return answer
