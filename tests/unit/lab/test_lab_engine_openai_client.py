"""The official ``openai`` Python client against the lab engine's ``/v1`` routes."""

from __future__ import annotations

import json
import math
import urllib.request

import openai
import pytest
from lab.artifacts.models import GOOD_ANSWERS

QUESTION = "What is the capital of France?"


@pytest.fixture
def oai(engine, client) -> openai.OpenAI:
    client.pull("lab-chat:v1")
    client.pull("lab-embed:v1")
    return openai.OpenAI(base_url=engine.url + "/v1", api_key="ollama", max_retries=0, timeout=30)


def test_models_list_and_retrieve(oai):
    ids = sorted(model.id for model in oai.models.list())
    assert ids == ["lab-chat:v1", "lab-embed:v1"]
    model = oai.models.retrieve("lab-chat:v1")
    assert model.id == "lab-chat:v1"
    assert model.owned_by == "library"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("ghost:v1")


def test_chat_completion(oai):
    completion = oai.chat.completions.create(model="lab-chat:v1", messages=[{"role": "user", "content": QUESTION}])
    assert completion.object == "chat.completion"
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == GOOD_ANSWERS[QUESTION]
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == len(GOOD_ANSWERS[QUESTION].split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_completion_stream_with_usage(oai):
    chunks = list(
        oai.chat.completions.create(
            model="lab-chat:v1",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == GOOD_ANSWERS[QUESTION]
    finals = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_chat_stream_is_server_sent_events_ending_with_done(engine, oai):
    body = {"model": "lab-chat:v1", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 2}
    request = urllib.request.Request(engine.url + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = [line.decode().strip() for line in response if line.strip()]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last_chunk = json.loads(lines[-2].removeprefix("data: "))
    assert last_chunk["choices"][0]["finish_reason"] == "length"


def test_max_tokens_caps_the_completion(oai):
    completion = oai.completions.create(model="lab-chat:v1", prompt="Write a poem", max_tokens=4)
    assert completion.usage.completion_tokens == 4
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].text


def test_embeddings_default_base64_and_float(oai):
    packed = oai.embeddings.create(model="lab-embed:v1", input=["one", "two"])
    floats = oai.embeddings.create(model="lab-embed:v1", input=["one", "two"], encoding_format="float")
    assert [len(item.embedding) for item in packed.data] == [384, 384]
    for a, b in zip(packed.data[0].embedding, floats.data[0].embedding, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    assert floats.usage.prompt_tokens == 2


def test_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="ghost:v1", messages=[{"role": "user", "content": "hi"}])
    assert "not found" in str(caught.value)
