"""Loading, keep_alive and /api/ps."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request

import ollama
import pytest
from lab.engine.core import EngineConfig
from lab.engine.scheduler import parse_keep_alive


def loaded(client) -> list[str]:
    return [model.model for model in client.ps().models]


def test_first_request_pays_the_load_time_and_the_next_does_not(chat_client):
    first = chat_client.generate("lab-chat:v1", "hello")
    second = chat_client.generate("lab-chat:v1", "hello")
    assert first.load_duration >= 0.3e9  # lab-chat:v1 loads in 0.3 s
    assert second.load_duration < 0.05e9


def test_empty_prompt_loads_and_keep_alive_zero_unloads(chat_client):
    loaded_answer = chat_client.generate("lab-chat:v1", "")
    assert loaded_answer.done_reason == "load"
    assert loaded(chat_client) == ["lab-chat:v1"]

    unloaded_answer = chat_client.generate("lab-chat:v1", "", keep_alive=0)
    assert unloaded_answer.done_reason == "unload"
    assert loaded(chat_client) == []


def test_empty_chat_loads_and_unloads(chat_client):
    assert chat_client.chat("lab-chat:v1", []).done_reason == "load"
    assert loaded(chat_client) == ["lab-chat:v1"]
    assert chat_client.chat("lab-chat:v1", [], keep_alive=0).done_reason == "unload"
    assert loaded(chat_client) == []


def test_keep_alive_zero_on_a_request_unloads_after_it(chat_client):
    chat_client.generate("lab-chat:v1", "hello", keep_alive=0)
    assert loaded(chat_client) == []


def test_model_unloads_when_keep_alive_expires(chat_client, wait_until):
    chat_client.generate("lab-chat:v1", "hello", keep_alive=1)
    (running,) = chat_client.ps().models
    remaining = (running.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 0 < remaining <= 1
    wait_until(lambda: loaded(chat_client) == [], timeout=5)


def test_keep_alive_duration_strings_and_forever(chat_client):
    chat_client.generate("lab-chat:v1", "hello", keep_alive="10m")
    remaining = (chat_client.ps().models[0].expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 590 < remaining <= 600

    chat_client.generate("lab-chat:v1", "hello", keep_alive=-1)
    expires = chat_client.ps().models[0].expires_at
    assert expires.year > dt.datetime.now(dt.UTC).year + 100


def test_invalid_keep_alive_is_400(chat_client):
    with pytest.raises(ollama.ResponseError) as caught:
        chat_client.generate("lab-chat:v1", "hello", keep_alive="soon")
    assert caught.value.status_code == 400


def test_max_loaded_models_evicts_the_least_recently_used(start_engine):
    engine = start_engine(max_loaded=1)
    client = ollama.Client(host=engine.url, timeout=30)
    client.pull("lab-chat:v1")
    client.pull("lab-chat:v2")
    client.generate("lab-chat:v1", "")
    client.generate("lab-chat:v2", "")
    assert loaded(client) == ["lab-chat:v2"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 300.0),
        ("", 300.0),
        (0, 0.0),
        ("0", 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (-1, None),
        ("-1", None),
        ("-5m", None),
    ],
)
def test_parse_keep_alive(value, seconds):
    assert parse_keep_alive(value, 300.0) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m5", True])
def test_parse_keep_alive_rejects_nonsense(value):
    with pytest.raises(ValueError, match="keep_alive"):
        parse_keep_alive(value, 300.0)


def test_concurrent_first_requests_share_one_load(chat_client):
    results: list[object] = []

    def ask() -> None:
        results.append(chat_client.generate("lab-chat:v1", "What is 2 + 2?"))

    threads = [threading.Thread(target=ask) for _client in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 3 and all(result.done for result in results)
    assert all(result.load_duration >= 0.25e9 for result in results)  # every caller waited for the same load
    assert [model.model for model in chat_client.ps().models] == ["lab-chat:v1"]


def test_engine_config_from_environment(tmp_path):
    config = EngineConfig.from_env(
        {
            "OLLAMA_HOST": "0.0.0.0:11500",
            "OLLAMA_MODELS": str(tmp_path),
            "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_LAB_REGISTRY": "http://artifacts:8080",
            "OLLAMA_MAX_LOADED_MODELS": "2",
        }
    )
    assert (config.host, config.port, config.models_dir) == ("0.0.0.0", 11500, tmp_path)
    assert config.keep_alive is None
    assert config.registry_url == "http://artifacts:8080"
    assert config.max_loaded == 2
    defaults = EngineConfig.from_env({"HOME": str(tmp_path)})
    assert (defaults.host, defaults.port, defaults.keep_alive) == ("127.0.0.1", 11434, 300.0)
    assert defaults.models_dir == tmp_path / ".ollama" / "models"


def run_together(*calls) -> list[object]:
    """Run the calls in threads released at the same moment; return results or exceptions, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = calls[index]()
        except Exception as exc:  # returned for the test to assert on
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_num_parallel_queues_requests_beyond_it(start_engine):
    client = ollama.Client(host=start_engine(num_parallel=1).url, timeout=30)
    client.pull("lab-chat:v1")
    client.generate("lab-chat:v1", "")

    def ask():
        return client.generate("lab-chat:v1", "Say something", options={"num_predict": 12})

    first, second = sorted(run_together(ask, ask), key=lambda result: result.total_duration)
    working = [result.prompt_eval_duration + result.eval_duration for result in (first, second)]
    assert second.total_duration >= 0.9 * sum(working)  # it waited for the other to finish


def test_max_queue_rejects_with_503_when_full(start_engine):
    client = ollama.Client(host=start_engine(num_parallel=1, max_queue=1).url, timeout=30)
    client.pull("lab-chat:bad")
    running = client.generate("lab-chat:bad", "What is 2 + 2?", stream=True)
    next(running)  # the only slot is taken now

    def ask():
        return client.generate("lab-chat:bad", "What is 2 + 2?", options={"num_predict": 1})

    outcomes = run_together(ask, ask)
    list(running)
    rejected = [outcome for outcome in outcomes if isinstance(outcome, ollama.ResponseError)]
    assert len(rejected) == 1
    assert rejected[0].status_code == 503
    assert rejected[0].error == "server busy, please try again.  maximum pending requests exceeded"
    assert any(getattr(outcome, "done", False) for outcome in outcomes)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "lab-chat:v1", "prompt": "hi", "options": {"num_predict": "many"}},
        {"model": "lab-chat:v1", "prompt": "hi", "options": ["not", "an", "object"]},
        {"model": "lab-chat:v1", "messages": [7, {"role": "user", "content": "hi"}]},
    ],
)
def test_bad_requests_do_not_hold_the_only_slot(start_engine, body):
    engine = start_engine(num_parallel=1)
    client = ollama.Client(host=engine.url, timeout=5)
    client.pull("lab-chat:v1")
    path = "/api/chat" if "messages" in body else "/api/generate"
    request = urllib.request.Request(engine.url + path, data=json.dumps(body).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert client.generate("lab-chat:v1", "hi", options={"num_predict": 1}).done  # times out if the slot leaked
