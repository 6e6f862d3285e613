"""ollama_model against the lab engine in-process (a real Ollama API, a real registry on loopback).

The disk-full case runs in the lab on a size-limited disk: tests/integration/test_ollama_role.py.
"""

from __future__ import annotations

import httpx
import pytest
from loopback import free_port

from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    PullProgress,
    keep_alive_value,
    normalize_digest,
)
from ansible_collections.namtech.internal_ai.plugins.modules import ollama_model


@pytest.fixture
def model(engine, run_module):
    """Run ollama_model against the engine."""

    def run(check_mode=False, diff=False, **args):
        return run_module(ollama_model, dict(args, url=engine.url, _ansible_diff=diff), check_mode=check_mode)

    return run


def tags(engine):
    answer = httpx.get(engine.url + "/api/tags", timeout=10).json()
    return {entry["name"]: entry["digest"] for entry in answer["models"]}


def loaded(engine):
    return [entry["name"] for entry in httpx.get(engine.url + "/api/ps", timeout=10).json()["models"]]


def pulls(registry):
    return [request for request in registry.requests if "/manifests/" in request.get("path", "")]


def test_pulls_a_missing_model_and_reports_progress(engine, model, digests):
    result = model(name="lab-chat:v1", digest=digests["lab-chat:v1"])
    assert result["exit_code"] == 0, result
    assert (result["changed"], result["digest"], result["previous_digest"]) == (True, digests["lab-chat:v1"], None)
    assert result["actions"] == ["pull lab-chat:v1"]
    progress = result["progress"]
    assert progress["bytes"] >= 4 * 1024 * 1024 and progress["layers"] == 5
    assert progress["seconds"] > 0 and progress["bytes_per_second"] > 0
    assert tags(engine) == {"lab-chat:v1": digests["lab-chat:v1"]}


def test_second_run_is_unchanged_and_does_not_pull(engine, model, artifact_server, digests):
    model(name="lab-chat:v1", digest="sha256:" + digests["lab-chat:v1"].upper())
    before = len(pulls(artifact_server))
    result = model(name="lab-chat:v1", digest=digests["lab-chat:v1"])
    assert (result["exit_code"], result["changed"], result["actions"]) == (0, False, [])
    assert "progress" not in result
    assert len(pulls(artifact_server)) == before
    without_digest = model(name="lab-chat:v1")
    assert (without_digest["changed"], without_digest["digest"]) == (False, digests["lab-chat:v1"])


def test_check_mode_reports_the_pull_without_pulling(engine, model, artifact_server, digests):
    before = len(pulls(artifact_server))
    result = model(check_mode=True, diff=True, name="lab-chat:v1", digest=digests["lab-chat:v1"])
    assert (result["exit_code"], result["changed"], result["actions"]) == (0, True, ["pull lab-chat:v1"])
    assert result["diff"] == {"before": "lab-chat:v1: absent\n", "after": "lab-chat:v1: %s\n" % digests["lab-chat:v1"]}
    assert tags(engine) == {} and len(pulls(artifact_server)) == before


def test_diff_shows_the_digests_before_and_after(engine, model, digests):
    model(name="lab-chat:v1")
    result = model(diff=True, name="lab-chat:v2", alias="assistant")
    assert result["diff"] == {
        "before": "lab-chat:v2: absent\nassistant:latest: absent\n",
        "after": "lab-chat:v2: {0}\nassistant:latest: {0}\n".format(digests["lab-chat:v2"]),
    }


def test_digest_mismatch_fails_and_removes_what_it_pulled(engine, model, digests):
    result = model(name="lab-chat:v1", digest=digests["lab-chat:v2"])
    assert result["exit_code"] == 1 and result["failed"] is True
    assert result["msg"] == (
        "digest mismatch: the registry serves lab-chat:v1 at digest %s, the task wants %s. The pulled model was "
        "removed. The tag now points at another version: pin the digest the registry serves, or pull a tag that "
        "still has the wanted version" % (digests["lab-chat:v1"], digests["lab-chat:v2"]))
    assert tags(engine) == {}


def test_digest_mismatch_puts_the_previous_version_back(engine, model, digests):
    model(name="lab-chat:v1", alias="assistant")
    result = model(name="lab-chat:v1", digest=digests["lab-chat:v2"])
    assert result["exit_code"] == 1 and result["msg"].startswith("digest mismatch: ")
    assert tags(engine) == {"lab-chat:v1": digests["lab-chat:v1"], "assistant:latest": digests["lab-chat:v1"]}


def test_registry_unreachable_fails_with_what_to_check(start_engine, model, run_module):
    port = free_port()
    engine = start_engine(registry_url="http://127.0.0.1:%d" % port)
    result = run_module(ollama_model, {"url": engine.url, "name": "lab-chat:v1"})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("cannot pull lab-chat:v1 (nothing of it was kept): POST %s/api/pull " % engine.url)
    assert 'pull model manifest: GET "http://127.0.0.1:%d/v2/library/lab-chat/manifests/v1"' % port in result["msg"]
    assert result["msg"].endswith(". Check that the Ollama server reaches its registry (DNS, proxy, firewall); for "
                                  "a registry over http set insecure=true")
    assert tags(engine) == {}


def test_unknown_tag_fails_and_names_it(engine, model):
    result = model(name="lab-chat:v9")
    assert result["exit_code"] == 1
    assert result["msg"].startswith("cannot pull lab-chat:v9 (nothing of it was kept): ")
    assert result["msg"].endswith("pull model manifest: file does not exist. Check the model's name and tag on its "
                                  "registry")


def test_alias_is_created_kept_and_repointed(engine, model, digests):
    first = model(name="lab-chat:v1", alias="assistant")
    assert first["actions"] == ["pull lab-chat:v1", "copy lab-chat:v1 to assistant:latest"]
    assert first["alias"] == {"name": "assistant:latest", "digest": digests["lab-chat:v1"], "previous_digest": None}
    again = model(name="lab-chat:v1", alias="assistant")
    assert (again["changed"], again["actions"]) == (False, [])
    model(name="lab-chat:v2")
    repoint = model(name="assistant", copy_from="lab-chat:v2", digest=digests["lab-chat:v2"])
    assert (repoint["changed"], repoint["actions"]) == (True, ["copy lab-chat:v2 to assistant:latest"])
    assert (repoint["previous_digest"], repoint["digest"]) == (digests["lab-chat:v1"], digests["lab-chat:v2"])
    assert tags(engine)["assistant:latest"] == digests["lab-chat:v2"]
    assert model(name="assistant", copy_from="lab-chat:v2")["changed"] is False


def test_copy_from_a_missing_model_fails(engine, model):
    result = model(name="assistant", copy_from="lab-chat:v2")
    assert result["exit_code"] == 1
    assert result["msg"] == ("cannot copy lab-chat:v2 to assistant:latest: lab-chat:v2 is not on the server. Pull it "
                             "first (state=present, name=lab-chat:v2)")


def test_copy_from_at_another_digest_than_wanted_copies_nothing(engine, model, digests):
    model(name="lab-chat:v1")
    result = model(name="assistant", copy_from="lab-chat:v1", digest=digests["lab-chat:v2"])
    assert result["exit_code"] == 1
    assert result["msg"] == "lab-chat:v1 has digest %s, the task wants %s for assistant:latest; nothing was copied" % (
        digests["lab-chat:v1"], digests["lab-chat:v2"])
    assert "assistant:latest" not in tags(engine)


def test_a_model_an_alias_points_at_is_not_deleted_without_force(engine, model, digests):
    model(name="lab-chat:v1", alias="assistant")
    refused = model(name="lab-chat:v1", state="absent")
    assert refused["exit_code"] == 1
    assert refused["msg"] == (
        "refusing to delete lab-chat:v1: assistant:latest shares its digest %s (an alias made by copy, or the model "
        "an alias copies). Repoint or remove it first, or set force=true" % digests["lab-chat:v1"])
    assert set(tags(engine)) == {"lab-chat:v1", "assistant:latest"}
    forced = model(name="lab-chat:v1", state="absent", force=True)
    assert (forced["changed"], forced["shared_with"]) == (True, ["assistant:latest"])
    assert forced["actions"] == ["delete lab-chat:v1"]
    assert tags(engine) == {"assistant:latest": digests["lab-chat:v1"]}


def test_absent_deletes_and_then_is_unchanged(engine, model, digests):
    model(name="lab-chat:v1")
    in_check = model(check_mode=True, name="lab-chat:v1", state="absent")
    assert (in_check["changed"], set(tags(engine))) == (True, {"lab-chat:v1"})
    deleted = model(name="lab-chat:v1", state="absent", diff=True)
    assert (deleted["changed"], deleted["previous_digest"], deleted["digest"]) == (True, digests["lab-chat:v1"], None)
    assert deleted["diff"] == {"before": "lab-chat:v1: %s\n" % digests["lab-chat:v1"], "after": "lab-chat:v1: absent\n"}
    assert tags(engine) == {}
    assert model(name="lab-chat:v1", state="absent")["changed"] is False


def test_warm_loads_once(engine, model):
    first = model(name="lab-chat:v1", alias="assistant", warm=True, keep_alive="-1")
    assert (first["loaded"], first["actions"][-1]) == (True, "load assistant:latest")
    assert loaded(engine) == ["assistant:latest"]
    again = model(name="lab-chat:v1", alias="assistant", warm=True, keep_alive="-1")
    assert (again["changed"], again["loaded"]) == (False, False)


def test_warm_in_check_mode_loads_nothing(engine, model):
    model(name="lab-chat:v1")
    result = model(check_mode=True, name="lab-chat:v1", warm=True)
    assert (result["changed"], result["loaded"]) == (True, True)
    assert loaded(engine) == []


@pytest.mark.parametrize(("args", "message"), [
    ({"name": "lab-chat:v1", "digest": "abc"},
     "digest must be 64 hex digits, optionally prefixed with sha256: (got 'abc'); copy it from ollama list or "
     "ollama_info"),
    ({"name": "lab-chat:v1", "state": "absent", "alias": "assistant"},
     "alias only applies to state=present; remove it from this task"),
    ({"name": "lab-chat:v1", "state": "absent", "warm": True},
     "warm only applies to state=present; remove it from this task"),
    ({"name": "lab-chat:v1", "alias": "lab-chat:v1"}, "alias must differ from name (both are lab-chat:v1)"),
    ({"name": " "}, "name must not be empty"),
])
def test_bad_arguments(engine, model, args, message):
    result = model(**args)
    assert (result["exit_code"], result["msg"]) == (1, message)


def test_unreachable_engine(run_module):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(ollama_model, {"url": url, "name": "lab-chat:v1", "retries": 0})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/tags: cannot connect (" % url)
    assert result["name"] == "lab-chat:v1"


def test_pull_progress_counts_each_layer_once_at_its_furthest_point():
    ticks = iter([10.0, 12.0])
    progress = PullProgress(clock=lambda: next(ticks))
    for event in ({"status": "pulling manifest"},
                  {"status": "pulling aa", "digest": "sha256:aa", "total": 300, "completed": 100},
                  {"status": "pulling aa", "digest": "sha256:aa", "total": 300, "completed": 300},
                  {"status": "pulling bb", "digest": "sha256:bb", "total": 100, "completed": 100},
                  {"status": "success"}):
        progress.record(event)
    progress.finish()
    assert progress.summary() == {"bytes": 400, "layers": 2, "seconds": 2.0, "bytes_per_second": 200}


@pytest.mark.parametrize(("given", "normal"), [("sha256:ABCD", "abcd"), (" abcd ", "abcd"), ("abcd", "abcd")])
def test_digests_are_compared_as_tags_lists_them(given, normal):
    assert normalize_digest(given) == normal


@pytest.mark.parametrize(("given", "sent"), [("300", 300), ("-1", -1), ("5m", "5m"), (None, None)])
def test_keep_alive_is_sent_as_seconds_or_a_duration(given, sent):
    assert keep_alive_value(given) == sent
