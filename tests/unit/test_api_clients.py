"""The typed clients' own rules: what counts as a finished pull, a missing model, a final answer."""

from __future__ import annotations

import json

import pytest
from loopback import json_answer, ndjson_answer

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    HttpClient,
    HttpStatusError,
    MalformedResponse,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    OllamaClient,
    canonical_model_name,
    processor_split,
    split_model_name,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import OpenAIClient


@pytest.fixture
def ollama(server):
    with HttpClient(server.url) as http:
        yield OllamaClient(http)


@pytest.fixture
def openai(server):
    with HttpClient(server.url) as http:
        yield OpenAIClient(http)


def test_a_pull_that_ends_without_success_is_an_error(server, ollama):
    server.route("POST", "/api/pull", ndjson_answer([{"status": "pulling manifest"},
                                                     {"status": "verifying sha256 digest"}]))
    with pytest.raises(MalformedResponse) as error:
        list(ollama.pull("lab-chat:v1"))
    assert str(error.value) == ("POST %s/api/pull: the pull of lab-chat:v1 ended without a 'success' event "
                                "(last event: {'status': 'verifying sha256 digest'})" % server.url)


def test_a_pull_sends_insecure_and_streams(server, ollama):
    server.route("POST", "/api/pull", ndjson_answer([{"status": "pulling manifest"}, {"status": "success"}]))
    assert [event["status"] for event in ollama.pull("reg:5000/ns/m:v1", insecure=True)] == [
        "pulling manifest", "success"]
    assert json.loads(server.requests[0]["body"]) == {"model": "reg:5000/ns/m:v1", "insecure": True, "stream": True}


def test_deleting_a_missing_model_is_false_and_other_errors_raise(server, ollama):
    server.route("DELETE", "/api/delete", json_answer({"error": "model 'x:latest' not found"}, 404))
    assert ollama.delete("x") is False
    server.route("DELETE", "/api/delete", json_answer({"error": "permission denied"}, 500))
    with pytest.raises(HttpStatusError):
        ollama.delete("x")


def test_a_non_streamed_answer_must_be_final(server, ollama):
    server.route("POST", "/api/generate", json_answer({"model": "m", "response": "Hel", "done": False}))
    with pytest.raises(MalformedResponse) as error:
        ollama.generate("m", "hi")
    assert str(error.value) == "POST %s/api/generate: the answer is not final ('done' is false)" % server.url


def test_chat_streams_events_until_done(server, ollama):
    events = [{"message": {"role": "assistant", "content": "Hi"}, "done": False},
              {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 1}]
    server.route("POST", "/api/chat", ndjson_answer(events))
    assert list(ollama.chat("m", [{"role": "user", "content": "hello"}], stream=True)) == events


def test_openai_chat_without_choices_is_malformed(server, openai):
    server.route("POST", "/v1/chat/completions", json_answer({"id": "x", "object": "chat.completion"}))
    with pytest.raises(MalformedResponse) as error:
        openai.chat("m", [{"role": "user", "content": "hi"}], max_tokens=4)
    assert str(error.value) == "POST %s/v1/chat/completions: the answer has no 'choices' field" % server.url
    assert json.loads(server.requests[0]["body"]) == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_openai_embeddings_need_data(server, openai):
    server.route("POST", "/v1/embeddings", json_answer({"object": "list", "data": [{"embedding": [0.1]}]}))
    assert openai.embeddings("e", ["a"])["data"] == [{"embedding": [0.1]}]


@pytest.mark.parametrize(("name", "expected"), [
    ("llama3.2", ("llama3.2", "latest")), ("lab-chat:v1", ("lab-chat", "v1")),
    ("registry.local:5000/team/model", ("registry.local:5000/team/model", "latest")),
    ("registry.local:5000/team/model:v2", ("registry.local:5000/team/model", "v2")),
])
def test_model_names_split_into_name_and_tag(name, expected):
    assert split_model_name(name) == expected
    assert canonical_model_name(name) == "%s:%s" % expected


@pytest.mark.parametrize(("size", "vram", "shown"), [
    (100, 100, "100% GPU"), (100, 0, "100% CPU"), (100, 25, "75%/25% CPU/GPU"), (0, 0, "unknown")])
def test_processor_split_reads_like_ollama_ps(size, vram, shown):
    assert processor_split(size, vram) == shown
