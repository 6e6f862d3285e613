# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The health gate a rollout runs after it repoints a served name: one pass of read-only checks.

Every check is a dict ``{name, passed, value, expected, detail}``. The gate fails closed: a check that
cannot run (the engine does not answer) counts as failed, and "no data" from Prometheus is a failure.
"""

from __future__ import annotations

import contextlib
import math
import operator
import time
import traceback

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError:
    jmespath = None
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    JMESPATH_IMPORT_ERROR = None

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    ApiError,
    ConnectionFailed,
    HttpStatusError,
    MalformedResponse,
    RequestTimeout,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    canonical_model_name,
    normalize_digest,
)

HAS_JMESPATH = jmespath is not None

DEFAULT_PROMETHEUS_PATH = "data.result[0].value[1]"
DEFAULT_PROMPT = "Reply with one short sentence: are you ready to answer questions?"
OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
NOT_RUN = "not run: "
LISTED_NAMES = 10
# The checks are planned up front, one per probe: a bound keeps a typo such as 10000000 from filling the memory.
MAX_PROBES = 100


def check(name, passed, value=None, expected=None, detail=""):
    return {"name": name, "passed": bool(passed), "value": value, "expected": expected, "detail": detail}


def not_run(name, reason, expected=None):
    return check(name, False, None, expected, NOT_RUN + reason)


def ran(item):
    return not item["detail"].startswith(NOT_RUN)


def listing(names):
    names = list(names)
    shown = ", ".join(names[:LISTED_NAMES]) or "nothing"
    return shown + (" and %d more" % (len(names) - LISTED_NAMES) if len(names) > LISTED_NAMES else "")


def seconds(value):
    return None if value is None else round(value, 4)


class Piece:
    """One event of a streamed answer: its text, the token count the server reports, whether it is final."""

    __slots__ = ("done", "text", "tokens")

    def __init__(self, text="", tokens=None, done=False):
        self.text = text
        self.tokens = tokens
        self.done = done


# -- engines -------------------------------------------------------------------------------------

class OllamaTarget:
    """What the gate asks an Ollama server: version, the model's digest, whether it is loaded, a chat stream."""

    identity_name = "digest"

    def __init__(self, client, model):
        self.client = client
        self.model = model
        self.canonical = canonical_model_name(model)
        self.digest = None

    def engine_check(self):
        version = self.client.version()
        return check("engine", True, version, None, "Ollama %s answers at %s" % (version, self.client.http.base_url))

    def identity_check(self, expected):
        digests = self.client.digests()
        self.digest = digests.get(self.canonical)
        if self.digest is None:
            return check("digest", False, None, expected, "%s is not on the server; /api/tags lists %s. Pull or copy "
                                                          "it first (ollama_model)" % (self.canonical,
                                                                                       listing(sorted(digests))))
        if expected is not None and self.digest != expected:
            return check("digest", False, self.digest, expected,
                         "%s has digest %s, expected %s: the name points at another version than the one deployed"
                         % (self.canonical, self.digest, expected))
        return check("digest", True, self.digest, expected, "%s has digest %s%s" % (
            self.canonical, self.digest, "" if expected is None else " as expected"))

    def loaded_check(self):
        loaded = self.client.ps()
        hits = [entry for entry in loaded if canonical_model_name(entry["name"]) == self.canonical
                or (self.digest is not None and normalize_digest(entry["digest"]) == self.digest)]
        if not hits:
            return check("loaded", False, False, True,
                         "%s is not loaded; /api/ps lists %s. Load it before the gate (ollama_model warm=true) or set "
                         "require_loaded=false" % (self.canonical, listing(entry["name"] for entry in loaded)))
        entry = hits[0]
        return check("loaded", True, True, True, "loaded as %s (%s, until %s)" % (
            entry["name"], entry["processor"], entry["expires_at"]))

    def stream(self, prompt, max_tokens):
        messages = [{"role": "user", "content": prompt}]
        for event in self.client.chat(self.model, messages, options={"num_predict": max_tokens}, stream=True):
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            done = event.get("done") is True
            tokens = event.get("eval_count") if done and isinstance(event.get("eval_count"), int) else None
            yield Piece(message.get("content") or "", tokens, done)


class OpenAITarget:
    """The same questions to an OpenAI-compatible server (vLLM, or Ollama's /v1 routes)."""

    identity_name = "root"

    def __init__(self, client, model):
        self.client = client
        self.model = model

    def engine_check(self):
        status = self.client.health()
        version = self.client.version()
        where = self.client.http.base_url
        if status not in (200, None):
            return check("engine", False, version, None, "GET %s answered HTTP %d: the engine is not ready (vLLM "
                                                         "answers 200 once its model is loaded)"
                         % (self.client.http.url_for("/health"), status))
        health = "no /health endpoint" if status is None else "/health answers 200"
        return check("engine", True, version, None, "the server at %s answers (%s, version %s)"
                     % (where, health, version or "unknown"))

    def identity_check(self, expected):
        models = self.client.models()
        entry = next((item for item in models if item["id"] == self.model), None)
        if entry is None:
            return check("root", False, None, expected, "%s is not served; /v1/models lists %s. Check the served "
                                                        "model name (vLLM --served-model-name)"
                         % (self.model, listing(item["id"] for item in models)))
        root = entry.get("root")
        if expected is not None and root != expected:
            return check("root", False, root, expected, "%s is served from %s, expected %s: the engine runs another "
                                                        "model than the one deployed" % (self.model, root, expected))
        return check("root", True, root, expected, "%s is served%s" % (
            self.model, "" if root is None else " from %s" % root))

    def stream(self, prompt, max_tokens):
        messages = [{"role": "user", "content": prompt}]
        tokens = None
        for event in self.client.chat(self.model, messages, max_tokens=max_tokens, stream=True,
                                      stream_options={"include_usage": True}):
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                tokens = usage["completion_tokens"]
            yield Piece(delta_text(event))
        yield Piece("", tokens, True)


def delta_text(event):
    """The text of a chat completion chunk; vLLM's first chunk carries only the role."""
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta")
    return (delta.get("content") or "") if isinstance(delta, dict) else ""


# -- probes --------------------------------------------------------------------------------------

def measure(pieces, clock, limit=None):
    """Time a streamed answer: first non-empty text (TTFT), last text, end; stop reading after ``limit`` s."""
    started = clock()
    first = last = None
    chunks, reported, done, cut = 0, None, False, False
    with contextlib.closing(pieces):
        for piece in pieces:
            now = clock()
            if piece.text:
                first = now if first is None else first
                last = now
                chunks += 1
            reported = piece.tokens if piece.tokens is not None else reported
            done = done or piece.done
            if limit is not None and not done and now - started > limit:
                cut = True
                break
    ended = clock()
    tokens = reported if reported is not None else chunks
    rate = (tokens - 1) / (last - first) if tokens > 1 and last is not None and last > first else None
    return {
        "ttft_seconds": seconds(None if first is None else first - started),
        "seconds": seconds(ended - started),
        "tokens": tokens,
        "tokens_per_second": None if rate is None else round(rate, 2),
        "chunks": chunks,
        "done": done,
        "cut": cut,
    }


def probe_limits(options):
    return {"max_ttft_seconds": options["max_ttft_seconds"], "max_seconds": options["max_seconds"]}


def judge_probe(name, figures, limits):
    max_seconds, max_ttft_seconds = limits["max_seconds"], limits["max_ttft_seconds"]
    value = dict((key, figures[key]) for key in ("ttft_seconds", "seconds", "tokens", "tokens_per_second"))
    problems = []
    if figures["cut"]:
        problems.append("no complete answer within max_seconds=%s (stopped reading after %s s)"
                        % (max_seconds, figures["seconds"]))
    elif not figures["done"]:
        problems.append("the answer stream ended before its final event")
    elif not figures["chunks"]:
        problems.append("the model answered with no text")
    ttft = figures["ttft_seconds"]
    if max_ttft_seconds is not None and ttft is not None and ttft > max_ttft_seconds:
        problems.append("first token after %s s, more than max_ttft_seconds=%s" % (ttft, max_ttft_seconds))
    if max_seconds is not None and not figures["cut"] and figures["seconds"] > max_seconds:
        problems.append("answered in %s s, more than max_seconds=%s" % (figures["seconds"], max_seconds))
    summary = probe_summary(figures)
    detail = "; ".join(problems) + " (%s)" % summary if problems else summary
    return check(name, not problems, value, limits, detail)


def probe_summary(figures):
    if figures["ttft_seconds"] is None:
        return "no text in %s s" % figures["seconds"]
    return "first token after %s s, %d tokens in %s s (%s tokens/s)" % (
        figures["ttft_seconds"], figures["tokens"], figures["seconds"], figures["tokens_per_second"])


# -- Prometheus ----------------------------------------------------------------------------------

def compile_path(path):
    """A compiled JMESPath expression; ValueError with the parser's complaint."""
    try:
        return jmespath.compile(path)
    except JMESPathError as exc:
        raise ValueError(" ".join(str(exc).split())) from None


class PrometheusClient:
    """Instant queries against Prometheus' HTTP API."""

    def __init__(self, http):
        self.http = http

    def query(self, promql):
        try:
            answer = self.http.get_json("/api/v1/query", params={"query": promql})
        except HttpStatusError as exc:
            if exc.status not in (401, 403):
                raise
            raise HttpStatusError(
                "%s. Prometheus wants a login (its web configuration has users): set prometheus_username and "
                "prometheus_password to one of them" % exc, url=exc.url, status=exc.status,
                server_error=exc.server_error) from None
        where = "GET %s?query=%s" % (self.http.url_for("/api/v1/query"), promql)
        if not isinstance(answer, dict):
            raise MalformedResponse("%s: expected a JSON object, got %s" % (where, type(answer).__name__))
        if answer.get("status") != "success":
            raise MalformedResponse("%s: Prometheus answered status %r: %s" % (
                where, answer.get("status"), answer.get("error") or "no error message"))
        return answer


def as_number(raw):
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def no_data_reason(answer, path, raw):
    data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
    if data.get("result") == []:
        return ("no data: the query returned an empty result (no series matched). Check the query and that "
                "Prometheus scrapes the target; a gate without data fails")
    return "no data: path %s yields %s in the answer; a gate without data fails" % (
        path, "null" if raw is None else "an empty list")


def prometheus_name(spec):
    return "prometheus %s" % spec["name"]


def prometheus_expected(spec):
    return "%s %s" % (spec["op"], spec["value"])


def evaluate_prometheus(spec, answer):
    """The check for one ``prometheus_checks`` entry, given Prometheus' answer to its query."""
    name, expected = prometheus_name(spec), prometheus_expected(spec)
    raw = compile_path(spec["path"]).search(answer)
    if raw is None or raw == []:
        return check(name, False, None, expected, no_data_reason(answer, spec["path"], raw))
    number = as_number(raw)
    if number is None:
        return check(name, False, None, expected, "path %s yields %r, not a number. Point path at a sample value, "
                                                  "such as %s" % (spec["path"], raw, DEFAULT_PROMETHEUS_PATH))
    if math.isnan(number):
        return check(name, False, None, expected, "no data: the value is NaN (a ratio over a window without "
                                                  "traffic, for example); a gate without data fails")
    passed = OPERATORS[spec["op"]](number, spec["value"])
    detail = "%s %s %s" % (raw, spec["op"] if passed else "is not " + spec["op"], spec["value"])
    return check(name, passed, number, expected, detail)


# -- the gate ------------------------------------------------------------------------------------

class HealthGate:
    """Runs the checks in an order where none disturbs the next: the loaded check before any generation."""

    def __init__(self, target, options, prometheus=None, clock=None):
        self.target = target
        self.options = options
        self.prometheus = prometheus
        self.clock = clock or time.monotonic
        self.checks = []

    def run(self):
        if self.attempt("engine", self.target.engine_check):
            self.engine_checks()
        else:
            for name, expected in self.planned_engine_checks():
                self.checks.append(not_run(name, "the engine check failed", expected))
        self.prometheus_checks()
        return self.checks

    def attempt(self, name, run, expected=None):
        try:
            outcome = run()
        except ApiError as exc:
            outcome = check(name, False, None, expected, str(exc))
        self.checks.append(outcome)
        return outcome["passed"]

    def planned_engine_checks(self):
        """``(name, expected)`` of the checks that need the engine, in the order they would run."""
        options = self.options
        planned = [(self.target.identity_name, options["expected"])]
        if options["require_loaded"]:
            planned.append(("loaded", True))
        if options["warmup"]:
            planned.append(("warmup", None))
        return planned + [("probe %d" % number, probe_limits(options)) for number in range(1, options["probes"] + 1)]

    def engine_checks(self):
        options = self.options
        self.attempt(self.target.identity_name, lambda: self.target.identity_check(options["expected"]),
                     options["expected"])
        if options["require_loaded"]:
            self.attempt("loaded", self.target.loaded_check, True)
        if options["warmup"]:
            self.attempt("warmup", self.warm_up)
        self.probes()

    def warm_up(self):
        figures = measure(self.target.stream(self.options["prompt"], self.options["max_tokens"]), self.clock)
        passed = figures["done"] and figures["chunks"] > 0
        detail = "untimed warm-up answered in %s s" % figures["seconds"] if passed else \
            "the warm-up answer was %s" % ("empty" if figures["done"] else "cut short")
        return check("warmup", passed, {"seconds": figures["seconds"]}, None, detail)

    def probes(self):
        options = self.options
        for number in range(1, options["probes"] + 1):
            name = "probe %d" % number
            try:
                figures = measure(self.target.stream(options["prompt"], options["max_tokens"]), self.clock,
                                  options["max_seconds"])
            except (ConnectionFailed, RequestTimeout) as exc:
                self.checks.append(check(name, False, None, probe_limits(options), str(exc)))
                for rest in range(number + 1, options["probes"] + 1):
                    self.checks.append(not_run("probe %d" % rest, "probe %d could not reach the engine" % number,
                                               probe_limits(options)))
                return
            except ApiError as exc:
                self.checks.append(check(name, False, None, probe_limits(options), str(exc)))
                continue
            self.checks.append(judge_probe(name, figures, probe_limits(options)))

    def prometheus_checks(self):
        specs = self.options["prometheus_checks"] or []
        for index, spec in enumerate(specs):
            name, expected = prometheus_name(spec), prometheus_expected(spec)
            try:
                outcome = evaluate_prometheus(spec, self.prometheus.query(spec["query"]))
            except ConnectionFailed as exc:
                self.checks.append(check(name, False, None, expected, str(exc)))
                for rest in specs[index + 1:]:
                    self.checks.append(not_run(prometheus_name(rest), "Prometheus could not be reached",
                                               prometheus_expected(rest)))
                return
            except ApiError as exc:
                outcome = check(name, False, None, expected, str(exc))
            self.checks.append(outcome)


def failure_message(model, url, checks):
    """The module's ``msg`` when the gate fails: every failed check that ran, and how many did not run."""
    failed = [item for item in checks if not item["passed"]]
    shown = "; ".join("%s: %s" % (item["name"], item["detail"]) for item in failed if ran(item))
    skipped = len([item for item in failed if not ran(item)])
    return "health gate failed for %s at %s (%d of %d checks failed): %s%s" % (
        model, url, len(failed), len(checks), shown,
        "; %d check%s not run" % (skipped, "" if skipped == 1 else "s") if skipped else "")
