"""The OpenAI-compatible routes Ollama serves under ``/v1``."""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
from typing import TYPE_CHECKING

from . import api
from .behaviour import count_tokens
from .core import ApiError, Engine, Inference
from .names import InvalidName, ModelName
from .store import StoredModel

if TYPE_CHECKING:
    from .server import Exchange

FINGERPRINT = "fp_ollama"
_ids = itertools.count(1)
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def error_body(error: ApiError) -> dict:
    kind = _ERROR_TYPES.get(error.status, "api_error")
    return {"error": {"message": error.message, "type": kind, "param": None, "code": None}}


def list_models(exchange: Exchange) -> None:
    data = [_model_object(stored) for stored in exchange.engine.store.list()]
    exchange.send_json(200, {"object": "list", "data": data})


def retrieve_model(exchange: Exchange) -> None:
    raw = exchange.path.removeprefix("/v1/models/")
    try:
        stored = exchange.engine.store.get(ModelName.parse(raw))
    except InvalidName:
        stored = None
    if stored is None:
        raise ApiError(404, f'model "{raw}" not found')
    exchange.send_json(200, _model_object(stored))


def chat_completions(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "[] is too short - 'messages'")
    stored = _find(engine, body)
    api.require_capability(stored, "completion", "chat")
    prompt_tokens = sum(count_tokens(api.message_text(message)) for message in messages)
    engine.check_injected_error()
    inference = engine.start(stored, api.last_user_text(messages), _options(body), engine.keep_alive(None))
    inference.prompt_tokens = prompt_tokens
    ident = f"chatcmpl-{next(_ids)}"
    try:
        if body.get("stream"):
            exchange.stream("text/event-stream", _chat_events(ident, stored, inference, _wants_usage(body)))
            return
        text = inference.run_to_end()
        stats = inference.finish()
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": stats["done_reason"],
        }
        envelope = _envelope(ident, "chat.completion", stored)
        exchange.send_json(200, envelope | {"choices": [choice], "usage": _usage(stats)})
    finally:
        inference.release()


def completions(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    stored = _find(engine, body)
    api.require_capability(stored, "completion", "generate")
    engine.check_injected_error()
    inference = engine.start(stored, prompt, _options(body), engine.keep_alive(None))
    ident = f"cmpl-{next(_ids)}"
    try:
        if body.get("stream"):
            exchange.stream("text/event-stream", _completion_events(ident, stored, inference, _wants_usage(body)))
            return
        text = inference.run_to_end()
        stats = inference.finish()
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": stats["done_reason"]}
        envelope = _envelope(ident, "text_completion", stored)
        exchange.send_json(200, envelope | {"choices": [choice], "usage": _usage(stats)})
    finally:
        inference.release()


def embeddings(exchange: Exchange) -> None:
    body = exchange.json_body()
    raw_input = body.get("input")
    texts = [raw_input] if isinstance(raw_input, str) else raw_input
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise ApiError(400, "invalid input: expected a string or a list of strings")
    vectors, stats = api.compute_embeddings(exchange.engine, body, texts)
    as_base64 = body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "embedding": _pack(vector) if as_base64 else vector, "index": index}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": stats["prompt_eval_count"], "total_tokens": stats["prompt_eval_count"]}
    exchange.send_json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})


def _chat_events(ident: str, stored: StoredModel, inference: Inference, with_usage: bool):
    envelope = _envelope(ident, "chat.completion.chunk", stored)
    for token in inference.tokens():
        delta = {"role": "assistant", "content": token}
        yield _sse(envelope | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    stats = inference.finish()
    final = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": stats["done_reason"]}
    yield _sse(envelope | {"choices": [final]})
    if with_usage:
        yield _sse(envelope | {"choices": [], "usage": _usage(stats)})
    yield b"data: [DONE]\n\n"


def _completion_events(ident: str, stored: StoredModel, inference: Inference, with_usage: bool):
    envelope = _envelope(ident, "text_completion", stored)
    for token in inference.tokens():
        yield _sse(envelope | {"choices": [{"text": token, "index": 0, "finish_reason": None}]})
    stats = inference.finish()
    yield _sse(envelope | {"choices": [{"text": "", "index": 0, "finish_reason": stats["done_reason"]}]})
    if with_usage:
        yield _sse(envelope | {"choices": [], "usage": _usage(stats)})
    yield b"data: [DONE]\n\n"


def _find(engine: Engine, body: dict) -> StoredModel:
    try:
        return engine.find_model(body.get("model"))
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f'model "{body.get("model")}" not found, try pulling it first') from None
        raise


def _options(body: dict) -> dict:
    options: dict = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        options["num_predict"] = limit
    return options


def _wants_usage(body: dict) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _envelope(ident: str, kind: str, stored: StoredModel) -> dict:
    return {
        "id": ident,
        "object": kind,
        "created": int(time.time()),
        "model": stored.name.display,
        "system_fingerprint": FINGERPRINT,
    }


def _usage(stats: dict) -> dict:
    prompt, completion = stats["prompt_eval_count"], stats["eval_count"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _model_object(stored: StoredModel) -> dict:
    return {
        "id": stored.name.display,
        "object": "model",
        "created": int(stored.modified_at.timestamp()),
        "owned_by": stored.name.namespace,
    }


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _pack(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
