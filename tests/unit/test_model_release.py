"""model_release as a playbook runs it: every action, idempotence, check mode, diff, and the files it refuses."""

from __future__ import annotations

import datetime
import json
import stat

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils import release as release_utils
from ansible_collections.namtech.internal_ai.plugins.modules import model_release

D1, D2, D3 = ("a1" * 32, "b2" * 32, "c3" * 32)


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """Every reading is one minute after the previous one, from 2026-03-01 10:00:00 UTC."""
    moments = iter(datetime.datetime(2026, 3, 1, 10, minute, tzinfo=datetime.timezone.utc) for minute in range(60))
    monkeypatch.setattr(release_utils, "utc_now", lambda: next(moments))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "namtech_ai" / "releases.json"


@pytest.fixture
def release(path, run_module):
    def run(check_mode=False, diff=False, **args):
        return run_module(model_release, dict(args, path=str(path), _ansible_diff=diff), check_mode=check_mode)

    return run


def at(minute):
    return "2026-03-01T10:%02d:00Z" % minute


def on_disk(path):
    return json.loads(path.read_text())


def test_first_promote_creates_the_record(release, path):
    result = release(alias="assistant", action="promote", model="lab-chat:v1", digest="sha256:" + D1.upper(),
                     deployed_by="awx-job-17")
    assert (result["exit_code"], result["changed"], result["before"]) == (0, True, None)
    entry = {"current": {"model": "lab-chat:v1", "digest": D1, "engine": "ollama", "since": at(0),
                         "deployed_by": "awx-job-17"}, "previous": [], "candidate": None}
    assert result["release"] == entry
    assert on_disk(path) == {"format": 1, "aliases": {"assistant": entry}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_promote_again_is_unchanged_and_does_not_rewrite(release, path):
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    written = path.stat().st_mtime_ns
    result = release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1, deployed_by="later")
    assert (result["exit_code"], result["changed"]) == (0, False)
    assert result["release"] == result["before"] and result["release"]["current"]["deployed_by"] == "ansible"
    assert path.stat().st_mtime_ns == written


def test_swap_then_rollback_round_trip(release, path):
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1, deployed_by="job-1")
    swapped = release(alias="assistant", action="promote", model="lab-chat:v2", digest=D2, deployed_by="job-2")
    assert swapped["before"]["current"]["model"] == "lab-chat:v1"
    assert swapped["release"]["previous"] == [{"model": "lab-chat:v1", "digest": D1, "engine": "ollama",
                                               "since": at(0), "until": at(1), "deployed_by": "job-1"}]
    rolled = release(alias="assistant", action="rollback", to=D1, deployed_by="rescue-2")
    assert (rolled["exit_code"], rolled["changed"]) == (0, True)
    assert rolled["release"]["current"] == {"model": "lab-chat:v1", "digest": D1, "engine": "ollama", "since": at(2),
                                            "deployed_by": "rescue-2"}
    assert [item["model"] for item in rolled["release"]["previous"]] == ["lab-chat:v2"]
    again = release(alias="assistant", action="rollback", to=D1)
    assert (again["exit_code"], again["changed"]) == (0, False)
    assert on_disk(path)["aliases"]["assistant"] == rolled["release"]


def test_rollback_without_to_takes_the_newest_previous(release):
    for model, digest in (("lab-chat:v1", D1), ("lab-chat:v2", D2), ("lab-chat:bad", D3)):
        release(alias="assistant", action="promote", model=model, digest=digest)
    result = release(alias="assistant", action="rollback")
    assert result["release"]["current"]["model"] == "lab-chat:v2"
    assert [item["model"] for item in result["release"]["previous"]] == ["lab-chat:bad", "lab-chat:v1"]


def test_rollback_to_a_named_model(release):
    for model, digest in (("lab-chat:v1", D1), ("lab-chat:v2", D2), ("lab-chat:bad", D3)):
        release(alias="assistant", action="promote", model=model, digest=digest)
    result = release(alias="assistant", action="rollback", to="lab-chat:v1")
    assert result["release"]["current"]["model"] == "lab-chat:v1"
    assert [item["model"] for item in result["release"]["previous"]] == ["lab-chat:bad", "lab-chat:v2"]


def test_rollback_failures_change_nothing(release, path):
    no_record = release(alias="assistant", action="rollback")
    assert no_record["exit_code"] == 1
    assert no_record["msg"] == ("alias assistant has no current release to roll back from; record one with "
                                "action=promote")
    assert not path.exists()
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    no_previous = release(alias="assistant", action="rollback")
    assert no_previous["msg"] == ("alias assistant has no previous version to roll back to (current: lab-chat:v1 "
                                  "(a1a1a1a1a1a1)). Nothing was changed; repoint the alias by hand and record it "
                                  "with action=promote")
    release(alias="assistant", action="promote", model="lab-chat:v2", digest=D2)
    before = path.read_text()
    unknown = release(alias="assistant", action="rollback", to="lab-chat:v7")
    assert unknown["exit_code"] == 1
    assert unknown["msg"] == ("alias assistant has no previous version matching 'lab-chat:v7'; the previous versions "
                              "are: lab-chat:v1 (a1a1a1a1a1a1). Give one of these models or digests as to")
    assert path.read_text() == before


def test_keep_previous_trims_the_history(release, path):
    for index, digest in enumerate((D1, D2, D3, "d4" * 32)):
        release(alias="assistant", action="promote", model="lab-chat:r%d" % index, digest=digest, keep_previous=2)
    assert [item["model"] for item in on_disk(path)["aliases"]["assistant"]["previous"]] == [
        "lab-chat:r2", "lab-chat:r1"]


def test_stage_promote_candidate_and_clear(release, path):
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    staged = release(alias="assistant", action="stage", model="lab-chat:v2", digest=D2, deployed_by="eval-3")
    assert (staged["changed"], staged["release"]["candidate"]) == (True, {
        "model": "lab-chat:v2", "digest": D2, "engine": "ollama", "staged_at": at(1), "staged_by": "eval-3"})
    assert release(alias="assistant", action="stage", model="lab-chat:v2", digest=D2)["changed"] is False
    cleared = release(alias="assistant", action="clear_candidate")
    assert (cleared["changed"], cleared["release"]["candidate"]) == (True, None)
    assert release(alias="assistant", action="clear_candidate")["changed"] is False
    release(alias="assistant", action="stage", model="lab-chat:v2", digest=D2)
    promoted = release(alias="assistant", action="promote", deployed_by="job-4")
    assert (promoted["changed"], promoted["release"]["candidate"]) == (True, None)
    assert promoted["release"]["current"]["model"] == "lab-chat:v2"
    assert on_disk(path)["aliases"]["assistant"]["current"]["deployed_by"] == "job-4"


def test_promote_without_a_candidate_fails(release):
    result = release(alias="assistant", action="promote")
    assert (result["exit_code"], result["msg"]) == (1, "alias assistant has no staged candidate to promote. Stage one "
                                                       "first (action=stage), or give model (and digest) to promote")


def test_openai_versions_need_no_digest(release, path):
    result = release(alias="assistant", action="promote", engine="openai", model="/srv/models/chat-v1")
    assert result["release"]["current"]["engine"] == "openai" and result["release"]["current"]["digest"] is None
    assert release(alias="assistant", action="promote", engine="openai",
                   model="/srv/models/chat-v1")["changed"] is False


def test_check_mode_computes_without_writing(release, path):
    result = release(check_mode=True, alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    assert (result["exit_code"], result["changed"]) == (0, True)
    assert result["release"]["current"]["model"] == "lab-chat:v1"
    assert not path.exists() and not path.parent.exists()
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    written = path.read_text()
    swap = release(check_mode=True, alias="assistant", action="promote", model="lab-chat:v2", digest=D2)
    assert swap["changed"] is True and swap["release"]["previous"][0]["model"] == "lab-chat:v1"
    rollback = release(check_mode=True, alias="assistant", action="rollback")
    assert (rollback["exit_code"], rollback["msg"]) == (1, "alias assistant has no previous version to roll back to "
                                                           "(current: lab-chat:v1 (a1a1a1a1a1a1)). Nothing was "
                                                           "changed; repoint the alias by hand and record it with "
                                                           "action=promote")
    assert path.read_text() == written


def test_diff_shows_the_alias_entry_before_and_after(release, path):
    created = release(diff=True, alias="assistant", action="stage", model="lab-chat:v1", digest=D1)
    header = "%s (alias assistant)" % path
    assert created["diff"] == {
        "before": "", "before_header": header, "after_header": header,
        "after": json.dumps({"current": None, "previous": [], "candidate": {
            "model": "lab-chat:v1", "digest": D1, "engine": "ollama", "staged_at": at(0), "staged_by": "ansible"}},
            indent=2) + "\n"}
    promoted = release(diff=True, alias="assistant", action="promote")
    assert json.loads(promoted["diff"]["before"]) == created["release"]
    assert json.loads(promoted["diff"]["after"]) == promoted["release"]


def test_info_returns_the_record_and_one_alias(release, path):
    empty = release()
    assert (empty["exit_code"], empty["changed"], empty["record"]) == (0, False, {"format": 1, "aliases": {}})
    assert "release" not in empty and not path.exists()
    release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    release(alias="embedder", action="promote", model="lab-embed:v1", digest=D2)
    whole = release(action="info")
    assert sorted(whole["record"]["aliases"]) == ["assistant", "embedder"]
    one = release(alias="embedder")
    assert one["release"]["current"]["model"] == "lab-embed:v1" and one["record"] == whole["record"]
    assert release(alias="nothing")["release"] is None


def test_a_corrupt_file_is_never_overwritten(release, path):
    path.parent.mkdir()
    path.write_text("{\"format\": 1, \"aliases\": {\"assistant\": ")
    result = release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    assert result["exit_code"] == 1
    assert result["msg"].startswith("the release record %s is not valid JSON (" % path)
    assert result["msg"].endswith("it was left untouched. Restore it from a backup, or move it aside to start a new "
                                  "record")
    assert path.read_text() == "{\"format\": 1, \"aliases\": {\"assistant\": "
    info = release(action="info")
    assert info["exit_code"] == 1 and info["msg"] == result["msg"]


def test_a_record_of_a_newer_format_is_refused(release, path):
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 2, "aliases": {}}))
    result = release(alias="assistant", action="promote", model="lab-chat:v1", digest=D1)
    assert result["msg"] == ("the release record %s is not in release record format 1: it is format 2, written by a "
                             "newer namtech.internal_ai; upgrade the collection on the controller; it was left "
                             "untouched. Restore it from a backup, or move it aside to start a new record" % path)
    assert on_disk(path) == {"format": 2, "aliases": {}}


def test_an_unwritable_directory_says_what_to_do(run_module, tmp_path):
    (tmp_path / "var").write_text("not a directory\n")
    target = tmp_path / "var" / "namtech_ai" / "releases.json"
    result = run_module(model_release, {"path": str(target), "alias": "assistant", "action": "promote",
                                        "model": "lab-chat:v1", "digest": D1})
    assert result["exit_code"] == 1
    assert result["msg"] == ("cannot write the release record %s: Not a directory: %s. Run the task with become: "
                             "true, or set path to a file in a directory the remote user can write"
                             % (target, tmp_path / "var" / "namtech_ai"))
    assert (tmp_path / "var").read_text() == "not a directory\n"


@pytest.mark.parametrize(("args", "message"), [
    ({"action": "promote", "model": "lab-chat:v1", "digest": D1}, "alias is required for action=promote"),
    ({"alias": " ", "action": "clear_candidate"}, "alias must not be empty"),
    ({"alias": "a", "action": "stage"}, "action=stage needs model (and digest for engine=ollama)"),
    ({"alias": "a", "action": "stage", "model": "lab-chat:v1"},
     "digest is required with model for engine=ollama, so the record pins the exact version; take it from "
     "ollama_model's result or ollama list"),
    ({"alias": "a", "action": "promote", "model": "lab-chat:v1", "digest": "abc"},
     "digest must be 64 hex digits, optionally prefixed with sha256: (got 'abc'); copy it from ollama list, "
     "ollama_info or ollama_model's result"),
    ({"alias": "a", "action": "promote", "digest": D1},
     "digest needs model: give the model name the digest belongs to"),
    ({"alias": "a", "action": "rollback", "model": "lab-chat:v1"},
     "model only applies to action=stage or action=promote; remove it from this task (name the version with to)"),
    ({"alias": "a", "action": "promote", "to": "lab-chat:v1"},
     "to only applies to action=rollback; remove it from this task"),
    ({"alias": "a", "action": "promote", "model": "m", "digest": D1, "keep_previous": -1},
     "keep_previous must be 0 or more (got -1)"),
])
def test_bad_arguments(release, path, args, message):
    result = release(**args)
    assert (result["exit_code"], result["msg"]) == (1, message)
    assert not path.exists()
