"""ai_backup and ai_restore with a local destination: directory, config and model sources, end to end.

Runs as root (like the modules on a node), so owners are part of what must come back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

import pytest
from lab.engine.names import ModelName
from lab.engine.store import ModelStore

from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup, ai_restore

SECRET = "a long secret from ansible vault"
OWNER = "postgres"  # a user and group Debian's postgresql package creates; any non-root owner would do


def tree_state(root):
    """``{relative path: (type, mode, owner, content sha256 or link target)}`` of everything under ``root``."""
    state = {}
    root = Path(root)
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        relative = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            state[relative] = ("link", None, (st.st_uid, st.st_gid), os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            state[relative] = ("dir", stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid), None)
        else:
            state[relative] = ("file", stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid),
                               hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def write_blob(store_dir, data):
    digest = hashlib.sha256(data).hexdigest()
    (store_dir / "blobs" / ("sha256-" + digest)).write_bytes(data)
    return {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + digest, "size": len(data)}


def write_model(store_dir, name, layers, config):
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": dict(config, mediaType="application/vnd.docker.container.image.v1+json"), "layers": layers}
    host, namespace, model, tag = ModelName.parse(name).manifest_parts()
    path = store_dir / "manifests" / host / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def node(tmp_path):
    """A node's data: a Chroma-like directory, config files and an Ollama store with three models."""
    chroma = tmp_path / "node" / "chroma"
    (chroma / "segments" / "a1").mkdir(parents=True)
    (chroma / "chroma.sqlite3").write_bytes(os.urandom(1_500_000))
    (chroma / "segments" / "a1" / "data_level0.bin").write_bytes(os.urandom(900_000))
    (chroma / "segments" / "a1" / "header.bin").write_bytes(b"header")
    os.chmod(chroma / "segments" / "a1" / "header.bin", 0o600)
    os.symlink("segments/a1/header.bin", chroma / "current")
    os.chmod(chroma / "segments", 0o750)
    os.chown(chroma / "segments" / "a1" / "data_level0.bin", *owner_ids())

    etc = tmp_path / "node" / "etc"
    (etc / "namtech" / "prompts").mkdir(parents=True)
    (etc / "namtech" / "prompts" / "system.txt").write_text("You are the support assistant.\n")
    (etc / "namtech" / "guardrails.yaml").write_text("blocked_topics: [salaries]\n")
    (etc / "default").mkdir()
    (etc / "default" / "ollama").write_text("OLLAMA_KEEP_ALIVE=1h\n")
    os.chmod(etc / "default" / "ollama", 0o600)
    os.chown(etc / "namtech" / "guardrails.yaml", *owner_ids())
    (etc / "namtech" / "prompts" / "draft.swp").write_text("editor swap file")

    models = tmp_path / "node" / "models"
    (models / "blobs").mkdir(parents=True)
    weights = write_blob(models, os.urandom(700_000))
    template = write_blob(models, b"{{ .Prompt }}")
    config = write_blob(models, json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())
    other = write_blob(models, os.urandom(1000))
    write_model(models, "lab-chat:v1", [weights, template], config)
    write_model(models, "assistant:latest", [weights, template], config)  # an alias: the same blobs
    write_model(models, "unrelated:v9", [other], config)
    return {"root": tmp_path, "chroma": chroma, "etc": etc, "models": models, "backups": tmp_path / "backups"}


def owner_ids():
    entry = pwd.getpwnam(OWNER)
    return entry.pw_uid, entry.pw_gid


def backup_args(node, **extra):
    args = {
        "name": "node1",
        "host": "node1",
        "sources": [
            {"type": "directory", "name": "chroma", "path": str(node["chroma"])},
            {"type": "config", "paths": [str(node["etc"] / "namtech"), str(node["etc"] / "default" / "*")],
             "exclude": ["*.swp"]},
            {"type": "models", "models_dir": str(node["models"]), "models": ["lab-chat:v1", "assistant"]},
        ],
        "destination": {"path": str(node["backups"])},
        "split_size_mb": 1,
        "compression": "gzip",
        "encryption_key": SECRET,
        "metrics_dir": str(node["root"]),
    }
    args.update(extra)
    return args


def restore_args(node, fresh, **extra):
    args = {
        "name": "node1",
        "destination": {"path": str(node["backups"])},
        "encryption_key": SECRET,
        "directory_paths": {"chroma": str(fresh / "chroma")},
        "config_root": str(fresh / "root"),
        "models_dir": str(fresh / "models"),
    }
    args.update(extra)
    return args


def config_state(root, etc):
    return {"namtech": tree_state(Path(str(root) + str(etc)) / "namtech"),
            "default/ollama": tree_state(Path(str(root) + str(etc)) / "default" / "ollama")}


def test_round_trip_to_a_fresh_node(node, run_module):
    backup = run_module(ai_backup, backup_args(node))
    assert backup["exit_code"] == 0, backup
    assert backup["changed"] is True and backup["encrypted"] is True and len(backup["parts"]) >= 2
    assert [source["name"] for source in backup["sources"]] == ["chroma", "config", "models"]

    fresh = node["root"] / "fresh"
    fresh.mkdir()
    plan = run_module(ai_restore, restore_args(node, fresh), check_mode=True)
    assert plan["exit_code"] == 0, plan
    assert plan["changed"] is True and plan["restored"] == [] and plan["verified_parts"] == len(backup["parts"])
    assert [change["action"] for change in plan["changes"] if change["source"] == "chroma"] == ["create"]
    assert list(fresh.iterdir()) == []

    restored = run_module(ai_restore, restore_args(node, fresh))
    assert restored["exit_code"] == 0, restored
    assert restored["restored"] == ["chroma", "config", "models"]
    assert tree_state(fresh / "chroma") == tree_state(node["chroma"])
    assert config_state(fresh / "root", node["etc"]) == {
        "namtech": {key: value for key, value in tree_state(node["etc"] / "namtech").items() if "swp" not in key},
        "default/ollama": tree_state(node["etc"] / "default" / "ollama")}
    models = ModelStore(fresh / "models")
    assert sorted(model.name.display for model in models.list()) == ["assistant:latest", "lab-chat:v1"]
    blobs = sorted((fresh / "models" / "blobs").iterdir())
    assert len(blobs) == 3
    assert all(blob.name == "sha256-" + hashlib.sha256(blob.read_bytes()).hexdigest() for blob in blobs)
    original = ModelStore(node["models"]).get(ModelName.parse("lab-chat:v1"))
    assert models.get(ModelName.parse("lab-chat:v1")).digest == original.digest
    assert sorted(path.name for path in (fresh / "models").iterdir()) == ["blobs", "manifests"]

    again = run_module(ai_restore, restore_args(node, fresh))
    assert (again["exit_code"], again["changed"], again["changes"], again["restored"]) == (0, False, [], [])


def test_shared_blobs_are_stored_once_and_the_manifest_describes_everything(node, run_module):
    backup = run_module(ai_backup, backup_args(node, encryption_key=None, compression="none"))
    backup_dir = node["backups"] / "node1" / backup["backup_id"]
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["format"] == "namtech.internal_ai.backup" and manifest["host"] == "node1"
    assert manifest["encryption"] is None and manifest["collection_version"] == "0.1.0"
    assert [part["name"] for part in manifest["parts"]] == sorted(path.name for path in backup_dir.iterdir()
                                                                  if path.name.startswith("part-"))
    models = next(source for source in manifest["sources"] if source["type"] == "models")
    blob_paths = [entry["path"] for entry in models["files"] if entry["path"].startswith("blobs/")]
    assert len(blob_paths) == len(set(blob_paths)) == 3
    assert [model["name"] for model in models["models"]] == ["lab-chat:v1", "assistant:latest"]
    config = next(source for source in manifest["sources"] if source["type"] == "config")
    guardrails = next(entry for entry in config["files"] if entry["path"].endswith("guardrails.yaml"))
    assert (guardrails["user"], guardrails["mode"], guardrails["type"]) == (OWNER, "0644", "file")
    assert not any(entry["path"].endswith(".swp") for entry in config["files"])
    assert (node["backups"] / "node1" / "latest").read_text() == backup["backup_id"] + "\n"
    listed = run_module(ai_backup, {"action": "list", "name": "node1", "destination": {"path": str(node["backups"])}})
    assert listed["backups"] == [{"id": backup["backup_id"], "complete": True}]
    assert (listed["latest"], listed["changed"]) == (backup["backup_id"], False)


def test_restore_in_place_puts_back_changed_and_removed_files_and_drops_new_ones(node, run_module):
    run_module(ai_backup, backup_args(node))
    before = tree_state(node["chroma"])
    (node["chroma"] / "chroma.sqlite3").write_bytes(b"corrupted by a bad upgrade")
    (node["chroma"] / "segments" / "a1" / "header.bin").unlink()
    (node["chroma"] / "stray.tmp").write_text("left over")
    args = {"name": "node1", "destination": {"path": str(node["backups"])}, "encryption_key": SECRET,
            "sources": ["chroma"]}
    plan = run_module(ai_restore, args, check_mode=True)
    change = plan["changes"][0]
    assert (change["action"], change["changed"], change["added"], change["removed"]) == (
        "replace", ["chroma.sqlite3"], ["segments/a1/header.bin"], ["stray.tmp"])
    result = run_module(ai_restore, args)
    assert result["exit_code"] == 0 and result["restored"] == ["chroma"]
    assert tree_state(node["chroma"]) == before
    assert sorted(path.name for path in node["chroma"].parent.iterdir()) == ["chroma", "etc", "models"]


def test_a_corrupted_part_is_refused_before_anything_changes(node, run_module):
    backup = run_module(ai_backup, backup_args(node))
    part = node["backups"] / "node1" / backup["backup_id"] / "part-00002"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    (node["chroma"] / "chroma.sqlite3").write_bytes(b"changed after the backup")
    before = tree_state(node["root"] / "node")
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                     "encryption_key": SECRET})
    assert result["failed"] is True
    assert result["msg"].startswith("backup %s is damaged: part-00002 has sha256 " % backup["backup_id"])
    assert result["msg"].endswith("bytes. Nothing was restored; restore another backup (backup=<id>)")
    assert tree_state(node["root"] / "node") == before


def test_a_missing_part_is_refused(node, run_module):
    backup = run_module(ai_backup, backup_args(node))
    (node["backups"] / "node1" / backup["backup_id"] / "part-00001").unlink()
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                     "encryption_key": SECRET}, check_mode=True)
    assert result["msg"].startswith("backup %s is damaged: part-00001 is missing from " % backup["backup_id"])


def test_a_wrong_or_missing_key_is_refused_before_anything_changes(node, run_module):
    backup = run_module(ai_backup, backup_args(node))
    (node["chroma"] / "chroma.sqlite3").write_bytes(b"changed after the backup")
    before = tree_state(node["root"] / "node")
    wrong = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                    "encryption_key": "not the key it was made with"})
    assert wrong["msg"] == ("wrong encryption key: backup %s was encrypted with another key. Nothing was restored; "
                            "give the encryption_key that was in use when it was made" % backup["backup_id"])
    assert SECRET not in json.dumps(wrong) and "not the key it was made with" not in json.dumps(wrong)
    missing = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])}})
    assert missing["msg"] == "backup %s is encrypted: give the encryption_key it was made with" % backup["backup_id"]
    assert tree_state(node["root"] / "node") == before


def test_a_named_backup_is_restored_not_the_latest(node, run_module, monkeypatch):
    first = run_module(ai_backup, backup_args(node, encryption_key=None))
    (node["etc"] / "namtech" / "prompts" / "system.txt").write_text("A newer prompt.\n")
    second = run_module(ai_backup, backup_args(node, encryption_key=None, host="node1b"))
    assert second["backup_id"] != first["backup_id"]
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                     "backup": first["backup_id"], "sources": ["config"]})
    assert result["backup_id"] == first["backup_id"]
    assert (node["etc"] / "namtech" / "prompts" / "system.txt").read_text() == "You are the support assistant.\n"
    assert [change["path"] for change in result["changes"]] == [str(node["etc"] / "namtech" / "prompts" /
                                                                    "system.txt")]


def test_disk_full_fails_clearly_and_leaves_nothing_half_written(node, run_module):
    small = node["root"] / "small"
    small.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True,
                       capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip("cannot mount a small tmpfs here (%s)" % exc)
    try:
        result = run_module(ai_backup, backup_args(node, destination={"path": str(small)}, compression="none"))
        assert result["failed"] is True
        assert result["msg"].startswith("cannot write the archive part %s/node1/." % small)
        assert "the disk is full: free space there or choose another place" in result["msg"]
        assert result["msg"].endswith("Backup %s was not published (no manifest, latest unchanged)"
                                      % result["msg"].split("/.")[1].split(".partial")[0])
        assert list((small / "node1").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True, timeout=30)
    metrics = (node["root"] / "namtech_backup.prom").read_text()
    assert 'namtech_backup_last_success_timestamp_seconds{backup="node1"} 0\n' in metrics
    assert 'namtech_backup_last_failure_timestamp_seconds{backup="node1"} 0\n' not in metrics


def test_a_destination_that_cannot_hold_the_backup_says_nothing_was_published(node, run_module, tmp_path):
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    result = run_module(ai_backup, backup_args(node, destination={"path": str(not_a_directory / "backups")}))
    assert result["failed"] is True
    assert result["msg"].startswith("cannot create the backup directory %s/node1/." % (not_a_directory / "backups"))
    assert re.search(r"\. Backup \S+ was not published \(no manifest, latest unchanged\)$", result["msg"]), \
        result["msg"]


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that logs its calls; only 'chroma' and 'ollama' run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    script = bin_dir / "systemctl"
    script.write_text('#!/bin/sh\necho "systemctl $*" >> %s\n'
                      'if [ "$1" = is-active ]; then case "$3" in chroma|ollama) exit 0;; *) exit 3;; esac; fi\n'
                      'exit 0\n' % log)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    return log


def test_services_are_stopped_around_their_source_and_commands_run_in_order(node, run_module, fake_systemctl):
    log = fake_systemctl
    source = {"type": "directory", "name": "chroma", "path": str(node["chroma"]),
              "stop_services": ["chroma", "not-running"], "pre_command": ["sh", "-c", "echo pre >> %s" % log],
              "post_command": ["sh", "-c", "echo post >> %s" % log]}
    result = run_module(ai_backup, backup_args(node, sources=[source]))
    assert result["exit_code"] == 0, result
    assert log.read_text().splitlines() == [
        "pre", "systemctl is-active --quiet chroma", "systemctl stop chroma",
        "systemctl is-active --quiet not-running", "systemctl start chroma", "post"]


def test_a_failing_source_still_starts_its_services_again(node, run_module, fake_systemctl):
    blob = next((node["models"] / "blobs").iterdir())
    models = {"type": "models", "models_dir": str(node["models"]), "stop_services": ["ollama"]}
    for path in (node["models"] / "blobs").iterdir():
        if path.stat().st_size == 700_000:
            blob = path
    blob.unlink()
    result = run_module(ai_backup, backup_args(node, sources=[models]))
    assert result["failed"] is True
    assert result["msg"].startswith("source models: blob sha256:%s of model " % blob.name[len("sha256-"):])
    assert "is missing from %s; the store is damaged: pull the model again" % node["models"] in result["msg"]
    assert fake_systemctl.read_text().splitlines() == ["systemctl is-active --quiet ollama", "systemctl stop ollama",
                                                       "systemctl start ollama"]
    assert not (node["backups"] / "node1" / "latest").exists()
    assert [path.name for path in (node["backups"] / "node1").iterdir()] == []


def test_a_recursive_glob_under_a_missing_directory_matches_nothing(node, run_module):
    """Python's glob gives back 'missing/' for 'missing/**'; the example inventories back up /etc/vllm/** on Ollama
    nodes, which have no /etc/vllm."""
    config = {"type": "config", "ignore_missing": True,
              "paths": [str(node["etc"] / "default" / "ollama"), str(node["etc"] / "vllm" / "**")]}
    plan = run_module(ai_backup, backup_args(node, sources=[config]), check_mode=True)
    assert [source["files"] for source in plan["sources"]] == [1]
    result = run_module(ai_backup, backup_args(node, sources=[config]))
    assert result["exit_code"] == 0, result["msg"]


def test_a_failing_pre_command_stops_the_backup(node, run_module):
    source = {"type": "directory", "path": str(node["chroma"]), "pre_command": ["sh", "-c", "echo busy >&2; exit 3"]}
    result = run_module(ai_backup, backup_args(node, sources=[source]))
    assert result["msg"].startswith("pre_command of source directory failed (sh exited with 3): busy")


def test_check_mode_reports_the_plan_and_writes_nothing(node, run_module):
    result = run_module(ai_backup, backup_args(node), check_mode=True)
    assert result["exit_code"] == 0 and result["changed"] is True
    plans = dict((plan["name"], plan) for plan in result["sources"])
    assert plans["chroma"]["files"] == 3 and plans["chroma"]["bytes"] == 1_500_000 + 900_000 + 6
    assert plans["models"]["models"] == ["lab-chat:v1", "assistant:latest"] and plans["models"]["blobs"] == 3
    assert not node["backups"].exists() and not (node["root"] / "namtech_backup.prom").exists()


@pytest.mark.parametrize(("source", "message"), [
    ({"type": "directory", "path": "relative/dir"}, "source directory: path must be an absolute directory"),
    ({"type": "directory", "path": "/nonexistent/chroma"}, "source directory: /nonexistent/chroma is not a directory"),
    ({"type": "directory", "path": "/tmp", "databases": ["x"]},
     "source directory (type directory) does not take the option databases"),
    ({"type": "config", "paths": ["/nonexistent/file.conf"]}, "source config: /nonexistent/file.conf does not exist. "
                                                              "Fix paths, or set ignore_missing=true"),
    ({"type": "models", "models_dir": "/tmp"}, "source models: /tmp has no manifests directory"),
    ({"type": "postgres"}, "source postgres: databases must name at least one database"),
    ({"type": "qdrant"}, "source qdrant: url must be Qdrant's REST address"),
    ({"type": "directory", "name": "bad name", "path": "/tmp"}, "source name 'bad name' is not a valid name"),
])
def test_bad_sources_are_refused_with_what_to_fix(node, run_module, source, message):
    result = run_module(ai_backup, backup_args(node, sources=[source]))
    assert result["failed"] is True and result["msg"].startswith(message), result["msg"]
    assert not (node["backups"] / "node1").exists() or list((node["backups"] / "node1").iterdir()) == []


def test_unknown_model_names_the_fix(node, run_module):
    models = {"type": "models", "models_dir": str(node["models"]), "models": ["missing:v1"]}
    result = run_module(ai_backup, backup_args(node, sources=[models]))
    assert result["msg"].startswith("source models: model missing:v1 is not in %s (no manifests/registry.ollama.ai/"
                                    "library/missing/v1). Check the name and tag with ollama list. Backup "
                                    % node["models"])
    assert result["msg"].endswith(" was not published (no manifest, latest unchanged)")


def test_restore_of_an_unknown_source_or_backup(node, run_module):
    backup = run_module(ai_backup, backup_args(node, encryption_key=None))
    base = {"name": "node1", "destination": {"path": str(node["backups"])}}
    unknown_source = run_module(ai_restore, dict(base, sources=["qdrant"]))
    assert unknown_source["msg"] == "backup %s has no source named qdrant; it has chroma, config, models" % (
        backup["backup_id"])
    unknown_backup = run_module(ai_restore, dict(base, backup="20200101T000000Z-node1"))
    assert unknown_backup["msg"] == ("backup 20200101T000000Z-node1 is not in %s/node1 (no manifest.json); list the "
                                     "backups with ai_backup action=list" % node["backups"])
    not_an_id = run_module(ai_restore, dict(base, backup="yesterday"))
    assert not_an_id["msg"].startswith("backup must be latest or a backup id")
    empty = run_module(ai_restore, dict(base, name="other"))
    assert empty["msg"] == "there is no backup in %s/other to restore" % node["backups"]


def test_secrets_never_reach_the_result(node, run_module):
    result = run_module(ai_backup, backup_args(node))
    assert SECRET not in json.dumps(result)


def edit_manifest(node, backup_id, change):
    path = node["backups"] / "node1" / backup_id / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def point_chroma_file_outside(manifest):
    chroma = manifest["sources"][0]
    next(entry for entry in chroma["files"] if entry["type"] == "file")["path"] = "../../escaped"


def test_an_altered_manifest_is_refused(node, run_module):
    encrypted = run_module(ai_backup, backup_args(node))
    edit_manifest(node, encrypted["backup_id"], lambda manifest: manifest["sources"][0].update(path="/etc"))
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                     "encryption_key": SECRET})
    assert result["msg"] == ("the manifest of backup %s was altered after the backup (its HMAC does not match). "
                             "Nothing was restored; restore another backup (backup=<id>)" % encrypted["backup_id"])


def test_a_manifest_path_leading_outside_the_target_is_refused(node, run_module):
    plain = run_module(ai_backup, backup_args(node, encryption_key=None))
    edit_manifest(node, plain["backup_id"], point_chroma_file_outside)
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])}})
    assert result["msg"] == ("the manifest of backup %s names an unsafe path '../../escaped' in source chroma; the "
                             "backup was altered. Nothing was restored" % plain["backup_id"])


def test_directory_paths_must_name_a_directory_source(node, run_module):
    backup = run_module(ai_backup, backup_args(node, encryption_key=None))
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(node["backups"])},
                                     "directory_paths": {"chromadb": "/tmp/x"}})
    assert result["msg"] == ("directory_paths names chromadb, but backup %s has no directory source of that name "
                             "(it has: chroma)" % backup["backup_id"])


def test_a_service_that_does_not_start_again_fails_the_task_after_the_backup_is_stored(
        node, run_module, tmp_path, monkeypatch):
    bin_dir = tmp_path / "failing-bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text('#!/bin/sh\nif [ "$1" = start ]; then echo "Job for chroma.service failed." >&2; exit 1; fi\n'
                      'exit 0\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    source = {"type": "directory", "name": "chroma", "path": str(node["chroma"]), "stop_services": ["chroma"]}
    result = run_module(ai_backup, backup_args(node, sources=[source]))
    assert result["failed"] is True
    backup_id = (node["backups"] / "node1" / "latest").read_text().strip()
    assert result["msg"] == ("backup %s was stored, but: starting chroma again after the backup failed (systemctl "
                             "exited with 1): Job for chroma.service failed.; start it by hand" % backup_id)


def test_an_invalid_backup_name_fails_restore_with_a_sentence(node, run_module):
    result = run_module(ai_restore, {"name": "../etc", "destination": {"path": str(node["backups"])}})
    assert result["failed"] is True
    assert "backup name" in result["msg"]
    assert "Traceback" not in result.get("module_stderr", "")
