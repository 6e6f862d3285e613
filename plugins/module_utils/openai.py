# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A client for OpenAI-compatible servers (vLLM, and Ollama's /v1 routes) over the one HTTP client.

Besides the ``/v1`` API it reads the operational endpoints vLLM adds: ``/health``, ``/version`` and
``/metrics``.
"""

from __future__ import annotations

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    HttpStatusError,
    MalformedResponse,
    drop_none,
    require_field,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import (
    MetricsParseError,
    parse_samples,
)

DEFAULT_URL = "http://127.0.0.1:8000"
MODEL_FIELDS = ("id", "object", "created", "owned_by", "root", "parent", "max_model_len")


def v1_suffix_error(name, url):
    """What is wrong with option ``name`` when its ``url`` ends in /v1, as OpenAI clients want it; None otherwise
    (also when ``url`` is not set).

    The client adds /v1 to the API routes itself, and /health, /version and /metrics are outside it.
    """
    root = (url or "").rstrip("/")
    if not root.endswith("/v1"):
        return None
    return "%s must be the server root without /v1 (got %s); try %s" % (name, url, root[: -len("/v1")])


class OpenAIClient:
    """Methods raise ``ApiError`` subclasses from ``http`` on any failure."""

    def __init__(self, http):
        self.http = http

    def models(self):
        where = "GET %s" % self.http.url_for("/v1/models")
        entries = require_field(self.http.get_json("/v1/models"), "data", list, where)
        models = []
        for entry in entries:
            require_field(entry, "id", str, where)
            models.append(dict((key, entry[key]) for key in MODEL_FIELDS if key in entry))
        return models

    def _create(self, path, body, stream, results_field="choices"):
        if stream:
            return self.http.stream_sse("POST", path, dict(body, stream=True))
        answer = self.http.post_json(path, body)
        require_field(answer, results_field, list, "POST %s" % self.http.url_for(path))
        return answer

    def chat(self, model, messages, max_tokens=None, stream=False, **extra):
        body = drop_none(model=model, messages=messages, max_tokens=max_tokens, **extra)
        return self._create("/v1/chat/completions", body, stream)

    def completions(self, model, prompt, max_tokens=None, stream=False, **extra):
        body = drop_none(model=model, prompt=prompt, max_tokens=max_tokens, **extra)
        return self._create("/v1/completions", body, stream)

    def embeddings(self, model, inputs):
        return self._create("/v1/embeddings", {"model": model, "input": inputs}, stream=False, results_field="data")

    def health(self):
        """The status code of ``/health`` (200 when the engine serves); None when the server has none."""
        try:
            return self.http.request("GET", "/health").status_code
        except HttpStatusError as exc:
            return None if exc.status == 404 else exc.status

    def version(self):
        """The engine's version from ``/version``; None when the server has no such endpoint."""
        try:
            answer = self.http.get_json("/version")
        except HttpStatusError as exc:
            if exc.status == 404:
                return None
            raise
        return require_field(answer, "version", str, "GET %s" % self.http.url_for("/version"))

    def metrics(self):
        """Every sample of ``/metrics``; None when the server has no such endpoint."""
        try:
            text = self.http.get_text("/metrics")
        except HttpStatusError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return parse_samples(text)
        except MetricsParseError as exc:
            raise MalformedResponse("GET %s is not in the Prometheus text format: %s"
                                    % (self.http.url_for("/metrics"), exc)) from None
