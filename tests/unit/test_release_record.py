"""The release record's rules, without Ansible: format, history, rollback targets, atomic writes."""

from __future__ import annotations

import datetime
import json
import os
import stat

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils.release import (
    ReleaseError,
    ReleaseRecord,
    load_record,
    matches,
    record_problem,
    timestamp,
    version_of,
    write_record,
)

D1, D2, D3, D4 = ("1" * 64, "2" * 64, "3" * 64, "4" * 64)


class Clock:
    """One minute later at every reading, from 2026-03-01 10:00:00 UTC."""

    def __init__(self):
        self.moment = datetime.datetime(2026, 3, 1, 9, 59, tzinfo=datetime.timezone.utc)

    def __call__(self):
        self.moment += datetime.timedelta(minutes=1)
        return self.moment


def at(minute):
    return "2026-03-01T10:%02d:00Z" % minute


def record_at(tmp_path):
    return ReleaseRecord(str(tmp_path / "releases.json"), clock=Clock())


def ollama(model, digest):
    return version_of(model, digest, "ollama")


def test_timestamps_are_utc_to_the_second_with_z():
    moment = datetime.datetime(2026, 3, 1, 12, 30, 15, 999, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert timestamp(moment) == "2026-03-01T10:30:15Z"


def test_version_digests_lose_their_prefix_and_case():
    assert version_of("m:v1", "sha256:" + "AB" * 32, "ollama") == {"model": "m:v1", "digest": "ab" * 32,
                                                                   "engine": "ollama"}
    assert version_of("/srv/models/chat", None, "openai")["digest"] is None


def test_a_missing_file_is_an_empty_record(tmp_path):
    assert load_record(str(tmp_path / "none.json")) == {"format": 1, "aliases": {}}


def test_promote_keeps_the_old_version_newest_first(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat:v1", D1), by="job-1")
    record.apply("assistant", "promote", version=ollama("chat:v2", D2), by="job-2")
    before, after = record.apply("assistant", "promote", version=ollama("chat:v3", D3), by="job-3")
    assert before["current"]["model"] == "chat:v2"
    assert after == {
        "current": {"model": "chat:v3", "digest": D3, "engine": "ollama", "since": at(2), "deployed_by": "job-3"},
        "previous": [
            {"model": "chat:v2", "digest": D2, "engine": "ollama", "since": at(1), "until": at(2),
             "deployed_by": "job-2"},
            {"model": "chat:v1", "digest": D1, "engine": "ollama", "since": at(0), "until": at(1),
             "deployed_by": "job-1"},
        ],
        "candidate": None,
    }


def test_promoting_the_current_version_changes_nothing(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat:v1", D1))
    before, after = record.apply("assistant", "promote", version=ollama("chat:v1", D1), by="another-run")
    assert before == after and after["current"]["since"] == at(0)


def test_previous_holds_neither_the_current_version_nor_duplicates(tmp_path):
    record = record_at(tmp_path)
    for version in (("chat:v1", D1), ("chat:v2", D2), ("chat:v1", D1), ("chat:v2", D2)):
        record.apply("assistant", "promote", version=ollama(*version))
    entry = record.entry("assistant")
    assert entry["current"]["digest"] == D2
    assert [item["digest"] for item in entry["previous"]] == [D1]


def test_keep_previous_drops_the_oldest(tmp_path):
    record = record_at(tmp_path)
    for model, digest in (("chat:v1", D1), ("chat:v2", D2), ("chat:v3", D3), ("chat:v4", D4)):
        record.apply("assistant", "promote", version=ollama(model, digest), keep_previous=2)
    assert [item["model"] for item in record.entry("assistant")["previous"]] == ["chat:v3", "chat:v2"]
    record.apply("assistant", "promote", version=ollama("chat:v1", D1), keep_previous=0)
    assert record.entry("assistant")["previous"] == []


def test_stage_then_promote_the_candidate(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat:v1", D1))
    _before, staged = record.apply("assistant", "stage", version=version_of("chat:v2", D2, "ollama"), by="eval-7")
    assert staged["candidate"] == {"model": "chat:v2", "digest": D2, "engine": "ollama", "staged_at": at(1),
                                   "staged_by": "eval-7"}
    again_before, again_after = record.apply("assistant", "stage", version=ollama("chat:v2", D2), by="eval-8")
    assert again_before == again_after
    _before, promoted = record.apply("assistant", "promote", version=None, by="job-9")
    assert promoted["candidate"] is None
    assert promoted["current"] == {"model": "chat:v2", "digest": D2, "engine": "ollama", "since": at(3),
                                   "deployed_by": "job-9"}


def test_a_promoted_candidate_keeps_its_engine(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "stage", version=version_of("/srv/models/chat-v2", None, "openai"))
    _before, after = record.apply("assistant", "promote", version=None)
    assert (after["current"]["engine"], after["current"]["digest"]) == ("openai", None)


def test_promote_without_candidate_fails(tmp_path):
    record = record_at(tmp_path)
    with pytest.raises(ReleaseError) as error:
        record.apply("assistant", "promote", version=None)
    assert str(error.value) == ("alias assistant has no staged candidate to promote. Stage one first (action=stage), "
                                "or give model (and digest) to promote")


def test_rollback_to_the_newest_previous_and_back(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat:v1", D1), by="job-1")
    record.apply("assistant", "promote", version=ollama("chat:v2", D2), by="job-2")
    _before, after = record.apply("assistant", "rollback", by="rescue")
    assert after["current"] == {"model": "chat:v1", "digest": D1, "engine": "ollama", "since": at(2),
                                "deployed_by": "rescue"}
    assert after["previous"] == [{"model": "chat:v2", "digest": D2, "engine": "ollama", "since": at(1),
                                  "until": at(2), "deployed_by": "job-2"}]


@pytest.mark.parametrize("target", ["chat:v1", "sha256:" + D1[:12].upper(), D1])
def test_rollback_to_a_named_version_by_model_or_digest(tmp_path, target):
    record = record_at(tmp_path)
    for model, digest in (("chat:v1", D1), ("chat:v2", D2), ("chat:v3", D3)):
        record.apply("assistant", "promote", version=ollama(model, digest))
    _before, after = record.apply("assistant", "rollback", target=target)
    assert after["current"]["model"] == "chat:v1"
    assert [item["model"] for item in after["previous"]] == ["chat:v3", "chat:v2"]
    again_before, again_after = record.apply("assistant", "rollback", target=target)
    assert again_before == again_after


def test_rollback_matches_ollama_names_with_their_default_tag(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat", D1))
    record.apply("assistant", "promote", version=ollama("chat:v2", D2))
    assert record.apply("assistant", "rollback", target="chat:latest")[1]["current"]["model"] == "chat"


def test_a_short_digest_does_not_name_a_version(tmp_path):
    assert matches({"model": "chat:v1", "digest": D1}, D1[:11]) is False
    assert matches({"model": "chat:v1", "digest": D1}, D1[:12]) is True
    assert matches({"model": "/srv/m", "digest": None, "engine": "openai"}, "/srv/m") is True


def test_rollback_without_history_fails(tmp_path):
    record = record_at(tmp_path)
    with pytest.raises(ReleaseError) as error:
        record.apply("assistant", "rollback")
    assert str(error.value) == ("alias assistant has no current release to roll back from; record one with "
                                "action=promote")
    record.apply("assistant", "promote", version=ollama("chat:v1", D1))
    with pytest.raises(ReleaseError) as error:
        record.apply("assistant", "rollback")
    assert str(error.value) == ("alias assistant has no previous version to roll back to (current: chat:v1 "
                                "(111111111111)). Nothing was changed; repoint the alias by hand and record it with "
                                "action=promote")


def test_rollback_to_an_unknown_version_lists_the_known_ones(tmp_path):
    record = record_at(tmp_path)
    for model, digest in (("chat:v1", D1), ("chat:v2", D2), ("chat:v3", D3)):
        record.apply("assistant", "promote", version=ollama(model, digest))
    with pytest.raises(ReleaseError) as error:
        record.apply("assistant", "rollback", target="chat:v9")
    assert str(error.value) == ("alias assistant has no previous version matching 'chat:v9'; the previous versions "
                                "are: chat:v2 (222222222222), chat:v1 (111111111111). Give one of these models or "
                                "digests as to")


def test_clear_candidate_only_changes_a_staged_candidate(tmp_path):
    record = record_at(tmp_path)
    assert record.apply("assistant", "clear_candidate") == (None, None)
    record.apply("assistant", "stage", version=ollama("chat:v2", D2))
    before, after = record.apply("assistant", "clear_candidate")
    assert before["candidate"]["model"] == "chat:v2" and after == {"current": None, "previous": [],
                                                                   "candidate": None}


def test_writes_are_atomic_and_readable_by_everyone(tmp_path):
    path = tmp_path / "state" / "ai" / "releases.json"
    record = ReleaseRecord(str(path), clock=Clock())
    record.apply("zeta", "promote", version=ollama("chat:v1", D1))
    record.apply("assistant", "promote", version=ollama("chat:v1", D1))
    moves = []

    def move(source, destination):
        moves.append((os.path.dirname(source), os.path.basename(source)))
        os.replace(source, destination)

    old_umask = os.umask(0o077)
    try:
        record.save(move)
    finally:
        os.umask(old_umask)
    assert moves[0][0] == str(path.parent) and moves[0][1].startswith(".releases.json.")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    text = path.read_text()
    assert list(json.loads(text)) == ["format", "aliases"]
    assert list(json.loads(text)["aliases"]) == ["assistant", "zeta"]
    assert load_record(str(path)) == json.loads(text)
    assert sorted(os.listdir(path.parent)) == ["releases.json"]


def test_a_failed_move_leaves_no_temporary_file(tmp_path):
    record = record_at(tmp_path)
    record.apply("assistant", "promote", version=ollama("chat:v1", D1))

    def refuse(source, destination):
        raise Exception("Could not replace %r with %r." % (destination, source))

    with pytest.raises(ReleaseError) as error:
        record.save(refuse)
    assert str(error.value).startswith("cannot write the release record %s: Could not replace " % record.path)
    assert os.listdir(tmp_path) == []


def test_writing_under_a_file_says_what_to_do(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a directory\n")
    path = tmp_path / "blocker" / "releases.json"
    with pytest.raises(ReleaseError) as error:
        write_record(str(path), {"format": 1, "aliases": {}}, os.replace)
    assert str(error.value) == ("cannot write the release record %s: File exists: %s. Run the task with become: true, "
                                "or set path to a file in a directory the remote user can write"
                                % (path, tmp_path / "blocker"))


@pytest.mark.parametrize(("document", "problem"), [
    ([], "the top level is list, not an object"),
    ({"aliases": {}}, "'format' is None, expected 1"),
    ({"format": 2, "aliases": {}}, "it is format 2, written by a newer namtech.internal_ai; upgrade the collection on "
                                   "the controller"),
    ({"format": 1}, "'aliases' is not an object"),
    ({"format": 1, "aliases": {"a": []}}, "aliases.a is not an object"),
    ({"format": 1, "aliases": {"a": {"current": "chat:v1"}}},
     "aliases.a.current is not an object with a string 'model'"),
    ({"format": 1, "aliases": {"a": {"previous": {}}}}, "aliases.a.previous is not a list"),
    ({"format": 1, "aliases": {"a": {"previous": [{"digest": D1}]}}},
     "aliases.a.previous[0] is not an object with a string 'model'"),
])
def test_records_of_another_shape_are_refused(document, problem):
    assert record_problem(document) == problem


def test_a_file_that_is_not_json_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "releases.json"
    path.write_text('{"format": 1, "aliases": {')
    with pytest.raises(ReleaseError) as error:
        ReleaseRecord(str(path))
    assert str(error.value).startswith("the release record %s is not valid JSON (" % path)
    assert str(error.value).endswith("); it was left untouched. Restore it from a backup, or move it aside to start a "
                                     "new record")
    assert path.read_text() == '{"format": 1, "aliases": {'


def test_an_unreadable_file_says_what_to_check(tmp_path):
    with pytest.raises(ReleaseError) as error:
        ReleaseRecord(str(tmp_path))
    assert str(error.value) == ("cannot read the release record %s: Is a directory. Check the file's owner and "
                                "permissions, or run the task with become: true" % tmp_path)
