"""Ollama's native REST API (``/api/...``), field for field."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .behaviour import Behaviour, context_ids, count_tokens, embedding
from .core import ApiError, Engine, Inference, now_iso
from .registry import PullError
from .store import MEDIA_LICENSE, MEDIA_PARAMS, MEDIA_SYSTEM, MEDIA_TEMPLATE, StoredModel

if TYPE_CHECKING:
    from .server import Exchange


def root(exchange: Exchange) -> None:
    exchange.send_text(200, "Ollama is running")


def version(exchange: Exchange) -> None:
    exchange.send_json(200, {"version": exchange.engine.config.version})


def tags(exchange: Exchange) -> None:
    models = [
        {
            "name": stored.name.display,
            "model": stored.name.display,
            "modified_at": stored.modified_at.isoformat(),
            "size": stored.size,
            "digest": stored.digest,
            "details": stored.details(),
        }
        for stored in exchange.engine.store.list()
    ]
    exchange.send_json(200, {"models": models})


def ps(exchange: Exchange) -> None:
    now = time.monotonic()
    models = []
    for runner in exchange.engine.scheduler.running():
        stored = runner.stored
        models.append(
            {
                "name": stored.name.display,
                "model": stored.name.display,
                "size": runner.size,
                "digest": stored.digest,
                "details": stored.details(),
                "expires_at": runner.expires_at(now).isoformat(),
                "size_vram": runner.size if runner.behaviour.gpu else 0,
                "context_length": runner.context_length,
            }
        )
    exchange.send_json(200, {"models": models})


def pull(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    name = engine.parse_name(body.get("model") or body.get("name"))
    insecure = bool(body.get("insecure"))
    if body.get("stream", True) is False:
        try:
            engine.puller.pull(name, insecure, lambda _progress: None)
        except PullError as exc:
            raise ApiError(500, str(exc)) from None
        exchange.send_json(200, {"status": "success"})
        return
    exchange.start_stream("application/x-ndjson")
    try:
        engine.puller.pull(name, insecure, exchange.write_ndjson)
    except PullError as exc:
        exchange.write_ndjson({"error": str(exc)})
    exchange.end_stream()


def show(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    stored = engine.find_model(body.get("model") or body.get("name"))
    media_types = (MEDIA_TEMPLATE, MEDIA_LICENSE, MEDIA_SYSTEM)
    texts = {media: engine.store.read_layer_text(stored, media) for media in media_types}
    params = _params(engine, stored)
    answer = {
        "modelfile": _modelfile(engine, stored, texts, params),
        "parameters": "\n".join(f"{key:<30} {_param_value(value)}" for key, value in _param_items(params)),
        "template": texts[MEDIA_TEMPLATE] or "",
        "details": stored.details(),
        "model_info": _model_info(stored),
        "capabilities": capabilities(stored),
        "modified_at": stored.modified_at.isoformat(),
    }
    if texts[MEDIA_LICENSE] is not None:
        answer["license"] = texts[MEDIA_LICENSE]
    if texts[MEDIA_SYSTEM] is not None:
        answer["system"] = texts[MEDIA_SYSTEM]
    exchange.send_json(200, answer)


def copy(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    source = engine.parse_name(body.get("source"), "source")
    destination = engine.parse_name(body.get("destination"), "destination")
    if not engine.store.copy(source, destination):
        raise ApiError(404, f'model "{body.get("source")}" not found')
    exchange.send_bytes(200, b"", "text/plain; charset=utf-8")


def delete(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    raw = body.get("model") or body.get("name")
    name = engine.parse_name(raw)
    engine.scheduler.unload_name(name.canonical)
    if not engine.store.delete(name):
        raise ApiError(404, f"model '{raw}' not found")
    exchange.send_bytes(200, b"", "text/plain; charset=utf-8")


def generate(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    stored = engine.find_model(body.get("model"))
    require_capability(stored, "completion", "generate")
    keep_alive = engine.keep_alive(body.get("keep_alive"))
    prompt = str(body.get("prompt") or "")
    if not prompt and not body.get("images"):
        reason = load_or_unload(engine, stored, keep_alive)
        exchange.send_json(200, _base(stored) | {"response": "", "done": True, "done_reason": reason})
        return
    engine.check_injected_error()
    inference = engine.start(stored, prompt, body.get("options"), keep_alive)
    try:
        if body.get("stream", True) is False:
            text = inference.run_to_end()
            exchange.send_json(200, _generate_final(stored, inference, prompt, text))
        else:
            exchange.stream_ndjson(_generate_parts(stored, inference, prompt))
    finally:
        inference.release()


def _generate_parts(stored: StoredModel, inference: Inference, prompt: str) -> Iterator[dict]:
    for token in inference.tokens():
        yield _base(stored) | {"response": token, "done": False}
    yield _generate_final(stored, inference, prompt, "")


def _generate_final(stored: StoredModel, inference: Inference, prompt: str, response: str) -> dict:
    stats = inference.finish()
    context = context_ids(prompt + inference.text)
    return _base(stored) | {"response": response, "done": True} | stats | {"context": context}


def chat(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    stored = engine.find_model(body.get("model"))
    require_capability(stored, "completion", "chat")
    keep_alive = engine.keep_alive(body.get("keep_alive"))
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise ApiError(400, "messages must be a list")
    if not messages:
        reason = load_or_unload(engine, stored, keep_alive)
        message = {"role": "assistant", "content": ""}
        exchange.send_json(200, _base(stored) | {"message": message, "done_reason": reason, "done": True})
        return
    prompt_tokens = sum(count_tokens(message_text(message)) for message in messages)
    engine.check_injected_error()
    inference = engine.start(stored, last_user_text(messages), body.get("options"), keep_alive)
    inference.prompt_tokens = prompt_tokens
    try:
        if body.get("stream", True) is False:
            text = inference.run_to_end()
            exchange.send_json(200, _chat_final(stored, inference, text))
        else:
            exchange.stream_ndjson(_chat_parts(stored, inference))
    finally:
        inference.release()


def _chat_parts(stored: StoredModel, inference: Inference) -> Iterator[dict]:
    for token in inference.tokens():
        yield _base(stored) | {"message": {"role": "assistant", "content": token}, "done": False}
    yield _chat_final(stored, inference, "")


def _chat_final(stored: StoredModel, inference: Inference, content: str) -> dict:
    stats = inference.finish()
    return _base(stored) | {"message": {"role": "assistant", "content": content}, "done": True} | stats


def embed(exchange: Exchange) -> None:
    body = exchange.json_body()
    engine = exchange.engine
    raw_input = body.get("input")
    texts = [raw_input] if isinstance(raw_input, str) else raw_input
    if texts is None:
        texts = []
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise ApiError(400, "invalid input type")
    vectors, stats = compute_embeddings(engine, body, texts)
    exchange.send_json(200, {"model": body.get("model"), "embeddings": vectors} | stats)


def embeddings(exchange: Exchange) -> None:
    body = exchange.json_body()
    prompt = body.get("prompt") or ""
    if not prompt:
        exchange.engine.find_model(body.get("model"))
        exchange.send_json(200, {"embedding": []})
        return
    vectors, _stats = compute_embeddings(exchange.engine, body, [str(prompt)])
    exchange.send_json(200, {"embedding": vectors[0]})


def compute_embeddings(engine: Engine, body: dict, texts: list[str]) -> tuple[list[list[float]], dict]:
    """Shared by /api/embed, /api/embeddings and /v1/embeddings."""
    stored = engine.find_model(body.get("model"))
    require_capability(stored, "embedding", "embeddings")
    keep_alive = engine.keep_alive(body.get("keep_alive"))
    engine.check_injected_error()
    started = time.monotonic()
    lease = engine.lease(stored)
    try:
        behaviour: Behaviour = lease.runner.behaviour
        dimensions = _dimensions(body.get("dimensions"), behaviour.embedding_dim)
        time.sleep(behaviour.ttft_seconds * engine.faults.slow_factor)
        vectors = [embedding(stored.content_key, text, dimensions) for text in texts]
    finally:
        engine.scheduler.release(lease, keep_alive)
    stats = {
        "total_duration": int((time.monotonic() - started) * 1e9),
        "load_duration": int(lease.load_seconds * 1e9),
        "prompt_eval_count": sum(count_tokens(text) for text in texts),
    }
    return vectors, stats


def load_or_unload(engine: Engine, stored: StoredModel, keep_alive: float | None) -> str:
    """An empty prompt loads the model, or unloads it when keep_alive is 0."""
    if keep_alive == 0:
        engine.scheduler.unload(stored)
        return "unload"
    lease = engine.lease(stored)
    engine.scheduler.release(lease, keep_alive)
    return "load"


def capabilities(stored: StoredModel) -> list[str]:
    declared = stored.lab.get("capabilities")
    if declared:
        return list(declared)
    return ["embedding"] if int(stored.lab.get("embedding_dim") or 0) > 0 else ["completion"]


def require_capability(stored: StoredModel, capability: str, action: str) -> None:
    if capability not in capabilities(stored):
        raise ApiError(400, f'"{stored.name.display}" does not support {action}')


def message_text(message: object) -> str:
    if not isinstance(message, dict):
        raise ApiError(400, "each message must be an object")
    content = message.get("content") or ""
    if isinstance(content, list):  # OpenAI-style content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1])


def _base(stored: StoredModel) -> dict:
    return {"model": stored.name.display, "created_at": now_iso()}


def _dimensions(requested: object, native: int) -> int:
    if requested in (None, 0):
        return native
    if not isinstance(requested, int) or isinstance(requested, bool) or not 0 < requested <= native:
        raise ApiError(400, f"dimensions must be between 1 and {native}")
    return requested


def _params(engine: Engine, stored: StoredModel) -> dict:
    for layer in stored.layers:
        if layer.get("mediaType") == MEDIA_PARAMS:
            try:
                return json.loads(engine.store.blob_path(layer["digest"]).read_bytes())
            except (OSError, ValueError):
                return {}
    return {}


def _param_items(params: dict) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key, value in params.items():
        values = value if isinstance(value, list) else [value]
        items.extend((key, item) for item in values)
    return items


def _param_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _modelfile(engine: Engine, stored: StoredModel, texts: dict, params: dict) -> str:
    weights = next((layer for layer in stored.layers if layer.get("mediaType", "").endswith(".model")), None)
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this one, replace the FROM line with:",
        f"# FROM {stored.name.display}",
        "",
        f"FROM {engine.store.blob_path(weights['digest']) if weights else stored.name.display}",
    ]
    if texts[MEDIA_TEMPLATE]:
        lines.append(f'TEMPLATE """{texts[MEDIA_TEMPLATE]}"""')
    if texts[MEDIA_SYSTEM]:
        lines.append(f'SYSTEM """{texts[MEDIA_SYSTEM]}"""')
    lines.extend(f"PARAMETER {key} {_param_value(value)}" for key, value in _param_items(params))
    if texts[MEDIA_LICENSE]:
        lines.append(f'LICENSE """{texts[MEDIA_LICENSE]}"""')
    return "\n".join(lines) + "\n"


def _model_info(stored: StoredModel) -> dict:
    architecture = stored.config.get("model_family") or "llama"
    behaviour = Behaviour.from_lab_config(stored.lab)
    info = {
        "general.architecture": architecture,
        "general.file_type": 2,
        "general.parameter_count": int(stored.lab.get("parameter_count") or stored.weights_size),
        "general.quantization_version": 2,
        f"{architecture}.context_length": behaviour.context_length,
    }
    if behaviour.embedding_dim:
        info[f"{architecture}.embedding_length"] = behaviour.embedding_dim
    return info
