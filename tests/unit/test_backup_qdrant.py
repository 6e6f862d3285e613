"""The qdrant source and target against the Qdrant stand-in (tests/lab/qdrant_standin), and the stand-in itself."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from lab.qdrant_standin import QdrantStandin

from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup, ai_restore

API_KEY = "qdrant-key-123"


@pytest.fixture
def qdrant(tmp_path):
    servers = []

    def start(name="a", api_key=API_KEY):
        server = QdrantStandin(tmp_path / ("qdrant-" + name), api_key=api_key).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def call(server, method, path, **kwargs):
    answer = httpx.request(method, server.url + path, headers={"api-key": API_KEY}, timeout=10, **kwargs)
    return answer.status_code, answer.json()


def seed(server):
    for name, count in (("docs", 40), ("tickets", 7)):
        created = call(server, "PUT", "/collections/" + name, json={"vectors": {"size": 3, "distance": "Cosine"}})
        assert created[0] == 200
        points = [{"id": n, "vector": [n, n / 2, -n], "payload": {"text": "%s %d" % (name, n)}} for n in range(count)]
        assert call(server, "PUT", "/collections/%s/points?wait=true" % name, json={"points": points})[0] == 200


def points(server, collection):
    status, answer = call(server, "POST", "/collections/%s/points/scroll" % collection,
                          json={"limit": 1000, "with_vector": True})
    assert status == 200, answer
    return answer["result"]["points"]


def source(server, **extra):
    spec = {"type": "qdrant", "url": server.url, "api_key": API_KEY, "collections": ["docs", "tickets"]}
    spec.update(extra)
    return spec


def test_collections_round_trip_to_a_fresh_qdrant(qdrant, tmp_path, run_module):
    origin = qdrant("origin")
    seed(origin)
    backup = run_module(ai_backup, {"sources": [source(origin)], "destination": {"path": str(tmp_path / "b")}})
    assert backup["exit_code"] == 0, backup
    snapshots = backup["sources"][0]["snapshots"]
    assert [snapshot["collection"] for snapshot in snapshots] == ["docs", "tickets"]
    assert backup["sources"][0]["qdrant_version"] == "1.12.4"
    assert all(call(origin, "GET", "/collections/%s/snapshots" % name)[1]["result"] == [] for name in
               ("docs", "tickets")), "the server-side snapshots must be deleted after the download"
    assert API_KEY not in repr(backup)

    fresh = qdrant("fresh")
    target = {"url": fresh.url, "api_key": API_KEY}
    plan = run_module(ai_restore, {"destination": {"path": str(tmp_path / "b")}, "qdrant": target}, check_mode=True)
    assert [(change["action"], change["collection"], change["exists"], change["priority"])
            for change in plan["changes"]] == [("recover collection", "docs", False, "snapshot"),
                                               ("recover collection", "tickets", False, "snapshot")]
    assert call(fresh, "GET", "/collections")[1]["result"]["collections"] == []

    restored = run_module(ai_restore, {"destination": {"path": str(tmp_path / "b")}, "qdrant": target})
    assert restored["exit_code"] == 0, restored
    for name in ("docs", "tickets"):
        assert points(fresh, name) == points(origin, name)
        assert call(fresh, "POST", "/collections/%s/points/count" % name, json={"exact": True})[1]["result"] == {
            "count": 40 if name == "docs" else 7}
    assert fresh.store.recoveries == [
        {"collection": "docs", "priority": "snapshot", "checksum": snapshots[0]["checksum"]},
        {"collection": "tickets", "priority": "snapshot", "checksum": snapshots[1]["checksum"]}]


def test_a_collection_restores_under_another_name_with_the_chosen_priority(qdrant, tmp_path, run_module):
    origin = qdrant()
    seed(origin)
    run_module(ai_backup, {"sources": [source(origin, collections=["docs"])], "destination": {"path": str(tmp_path)}})
    result = run_module(ai_restore, {"destination": {"path": str(tmp_path)},
                                     "qdrant": {"api_key": API_KEY, "collections": {"docs": "docs_check"},
                                                "priority": "replica"}})
    assert result["exit_code"] == 0, result
    assert points(origin, "docs_check") == points(origin, "docs")
    assert origin.store.recoveries[-1]["priority"] == "replica"


def test_a_full_snapshot_is_kept_and_restored_as_a_file(qdrant, tmp_path, run_module):
    origin = qdrant()
    seed(origin)
    backup = run_module(ai_backup, {"sources": [source(origin, collections=[])],
                                    "destination": {"path": str(tmp_path)}})
    assert backup["exit_code"] == 0, backup
    snapshot = backup["sources"][0]["snapshots"][0]
    assert snapshot["collection"] is None and snapshot["snapshot"].startswith("full-snapshot-")
    assert call(origin, "GET", "/snapshots")[1]["result"] == []
    refused = run_module(ai_restore, {"destination": {"path": str(tmp_path)}, "qdrant": {"api_key": API_KEY}})
    assert refused["msg"] == ("source qdrant holds a full Qdrant snapshot, which Qdrant recovers only when it starts "
                              "(qdrant --storage-snapshot FILE); set qdrant.full_snapshot_dir to get the file")
    placed = run_module(ai_restore, {"destination": {"path": str(tmp_path)},
                                     "qdrant": {"api_key": API_KEY, "full_snapshot_dir": str(tmp_path / "full")}})
    assert placed["exit_code"] == 0, placed
    copied = tmp_path / "full" / snapshot["snapshot"]
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == snapshot["checksum"]


def test_a_missing_collection_fails_with_qdrants_error(qdrant, tmp_path, run_module):
    origin = qdrant()
    seed(origin)
    result = run_module(ai_backup, {"sources": [source(origin, collections=["docs", "nope"])],
                                    "destination": {"path": str(tmp_path)}})
    assert result["failed"] is True
    assert result["msg"].startswith("source qdrant: POST %s/collections/nope/snapshots?wait=true returned HTTP 404: "
                                    % origin.url)
    assert "Collection `nope` doesn't exist!" in result["msg"]
    assert call(origin, "GET", "/collections/docs/snapshots")[1]["result"] == []


def test_a_wrong_api_key_is_reported(qdrant, tmp_path, run_module):
    origin = qdrant()
    result = run_module(ai_backup, {"sources": [source(origin, api_key="wrong")],
                                    "destination": {"path": str(tmp_path)}})
    assert result["msg"].startswith("source qdrant: GET %s/ returned HTTP 401: " % origin.url)


def test_the_standin_checks_upload_checksums_and_recovers_from_file_locations(qdrant, tmp_path):
    server = qdrant()
    seed(server)
    created = call(server, "POST", "/collections/docs/snapshots?wait=true")[1]["result"]
    assert set(created) == {"name", "creation_time", "size", "checksum"}
    listed = call(server, "GET", "/collections/docs/snapshots")[1]["result"]
    assert listed == [created]
    data = httpx.get(server.url + "/collections/docs/snapshots/" + created["name"], headers={"api-key": API_KEY},
                     timeout=10).content
    assert hashlib.sha256(data).hexdigest() == created["checksum"] and len(data) == created["size"]
    bad = httpx.post(server.url + "/collections/copy/snapshots/upload", params={"checksum": "0" * 64},
                     files={"snapshot": ("s.snapshot", data)}, headers={"api-key": API_KEY}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["status"]["error"] == ("Bad request: Snapshot checksum mismatch: expected %s, got %s"
                                             % ("0" * 64, created["checksum"]))
    location = "file://%s" % (server.store.snapshot_dir("docs") / created["name"])
    status, answer = call(server, "PUT", "/collections/copy/snapshots/recover?wait=true",
                          json={"location": location, "priority": "snapshot", "checksum": created["checksum"]})
    assert (status, answer["result"], answer["status"]) == (200, True, "ok")
    assert points(server, "copy") == points(server, "docs")
    assert call(server, "DELETE", "/collections/docs/snapshots/%s?wait=true" % created["name"])[1]["result"] is True
    assert call(server, "GET", "/collections/docs/snapshots/" + created["name"])[0] == 404
    status, answer = call(server, "PUT", "/collections/copy/snapshots/recover",
                          json={"location": location, "priority": "fastest"})
    assert status == 404 or "unknown priority" in answer["status"]["error"]
