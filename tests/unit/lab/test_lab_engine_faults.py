"""The lab-only fault admin API (/lab/faults) and its environment variables."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import httpx
import ollama
import pytest
from lab.engine.faults import FaultError, Faults


def admin(engine, method: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(engine.url + "/lab/faults", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_faults_start_clear_and_can_be_set_read_and_cleared(engine):
    assert admin(engine, "GET") == (200, {"hang": False, "slow_factor": 1.0, "error_rate": 0.0, "fail_load": []})
    status, state = admin(engine, "POST", {"slow_factor": 3, "fail_load": ["lab-chat:v2"]})
    assert status == 200
    assert state["slow_factor"] == 3.0
    assert state["fail_load"] == ["registry.ollama.ai/library/lab-chat:v2"]
    assert admin(engine, "GET")[1]["slow_factor"] == 3.0
    assert admin(engine, "DELETE")[1]["slow_factor"] == 1.0


@pytest.mark.parametrize("body", [{"error_rate": 2}, {"slow_factor": 0}, {"explode": True}, {"fail_load": ["a/b/c/d"]}])
def test_invalid_faults_are_400(engine, body):
    status, answer = admin(engine, "POST", body)
    assert status == 400
    assert answer["error"]


def test_error_rate_one_fails_every_inference_with_500(chat_client, engine):
    admin(engine, "POST", {"error_rate": 1.0})
    for _attempt in range(3):
        with pytest.raises(ollama.ResponseError) as caught:
            chat_client.generate("lab-chat:v1", "hello")
        assert caught.value.status_code == 500
    with pytest.raises(ollama.ResponseError):
        chat_client.chat("lab-chat:v1", [{"role": "user", "content": "hello"}])
    assert chat_client.list().models  # management calls are not inference: unaffected


def test_error_rate_fails_that_fraction_of_requests(chat_client, engine):
    admin(engine, "POST", {"error_rate": 0.25})
    failures = 0
    for _attempt in range(8):
        try:
            chat_client.generate("lab-chat:v1", "hi", options={"num_predict": 1})
        except ollama.ResponseError as exc:
            assert exc.status_code == 500
            failures += 1
    assert failures == 2


def test_fail_load_fails_that_model_only(client, engine):
    client.pull("lab-chat:v1")
    client.pull("lab-chat:v2")
    admin(engine, "POST", {"fail_load": ["lab-chat:v2"]})
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate("lab-chat:v2", "hello")
    assert caught.value.status_code == 500
    assert "llama runner process has terminated" in caught.value.error
    assert [model.model for model in client.ps().models] == []
    assert client.generate("lab-chat:v1", "hello").done

    admin(engine, "DELETE")
    assert client.generate("lab-chat:v2", "hello").done


def test_slow_factor_slows_generation(chat_client, engine):
    chat_client.generate("lab-chat:v1", "")  # load first, so only generation is timed
    options = {"num_predict": 8}
    normal = chat_client.generate("lab-chat:v1", "Say something", options=options)
    admin(engine, "POST", {"slow_factor": 5})
    slowed = chat_client.generate("lab-chat:v1", "Say something", options=options)
    assert slowed.eval_duration > 3 * normal.eval_duration
    assert slowed.prompt_eval_duration > 3 * normal.prompt_eval_duration


def test_hang_stops_answering_until_cleared(chat_client, engine):
    admin(engine, "POST", {"hang": True})
    impatient = ollama.Client(host=engine.url, timeout=0.5)
    with pytest.raises(httpx.TimeoutException):
        impatient.list()

    answered = threading.Event()
    waiter = threading.Thread(target=lambda: (chat_client.list(), answered.set()), daemon=True)
    waiter.start()
    assert not answered.wait(0.2)  # parked while the hang lasts
    admin(engine, "DELETE")
    assert answered.wait(5)


def test_crash_calls_the_crash_handler(start_engine):
    crashed = threading.Event()
    engine = start_engine()
    engine.engine.on_crash = crashed.set
    status, answer = admin(engine, "POST", {"crash": True})
    assert status == 200 and answer["crash"] is True
    assert crashed.wait(5)


def test_faults_from_environment():
    faults = Faults.from_env(
        {
            "OLLAMA_LAB_FAULTS": '{"slow_factor": 2}',
            "OLLAMA_LAB_ERROR_RATE": "0.5",
            "OLLAMA_LAB_FAIL_LOAD": "lab-chat:v2,lab-embed",
            "OLLAMA_LAB_HANG": "0",
        }
    )
    assert faults.snapshot() == {
        "hang": False,
        "slow_factor": 2.0,
        "error_rate": 0.5,
        "fail_load": ["registry.ollama.ai/library/lab-chat:v2", "registry.ollama.ai/library/lab-embed:latest"],
    }
    with pytest.raises(FaultError):
        Faults.from_env({"OLLAMA_LAB_ERROR_RATE": "7"})
