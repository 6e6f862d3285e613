"""Backup and restore on the lab cluster, end to end, through the playbooks an operator runs.

The storage host runs PostgreSQL with pgvector, real Chroma, the Qdrant stand-in and s3rver (an S3-compatible
server), seeded by tests/lab/playbooks/storage_services.yml. One backup.yml run backs up the storage host
(pgvector, Chroma's directory with the service stopped, Qdrant) encrypted to S3, and an AI node (its engine
config and the pinned model's manifest and blobs) to its local disk. restore.yml puts both back into fresh
targets (another database, directory, collection, config root and model store), and the data is compared with
the live data: rows, an md5 over the embeddings and nearest neighbours; Chroma's count and query answers from a
second server on the restored copy; Qdrant's points; sha256 of every file. verify_backup.yml runs the restore
drill and catches a difference. Faults: a wrong key and a damaged part on S3 are refused before anything changes;
S3 going away in the middle of an upload publishes nothing and the next run succeeds (and prunes the leftovers).
A new machine (the spare lab host, replaced by a fresh container and disk) gets an AI node's models from S3 while
the model is gone from the registry, and the ollama role then deploys it without a pull; it also gets the storage
host's Chroma directory.

Run: cd /work/main && LAB_REUSE=1 PYTHONPATH=tests:bench:.build .venv/bin/pytest tests/integration/test_backup.py -rs
"""

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import BotoCoreError, ClientError
from lab import artifact_host, monitoring, storage
from lab.core import Lab
from lab.proc import wait_until

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ENV = {"ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH") or str(REPO / ".build")}
SETTINGS = storage.SETTINGS
SCRATCH = "/var/tmp/nti-backup-test"
ROLE_WORK_DIR = "/var/lib/namtech/backup"  # the backup role's default backup_work_dir
VERIFY_WORK_DIR = "/var/tmp/namtech-verify"  # verify_backup.yml's default verify_work_dir
METRICS_FILE = "/var/lib/prometheus/node-exporter/namtech_backup.prom"
KEY = "lab-only-backup-key-not-a-secret"
WRONG_KEY = "a-different-key-of-enough-length"
MODEL = "lab-chat:v1"
MODELS_DIR = "/srv/lab-disk/ollama/models"
PINNED_MANIFEST = "manifests/registry.ollama.ai/library/lab-chat/v1"  # MODEL's, in the store
CONFIG_DIR = "/etc/systemd/system/ollama.service.d"
RESTORED_CHROMA_PORT = 8001
RESTORED_CHROMA_UNIT = "nti-test-chroma-restored"
PG_DATABASE = SETTINGS["lab_storage_pg_database"]
QDRANT_COLLECTION = SETTINGS["lab_storage_qdrant_collection"]
SCRATCH_DATABASES = ("restored", "verify", "wrongkey", "damaged")
BULK_SET = "nti-test-bulk"
DISK_SET = "nti-test-disk-full"
BULK_MIB = 192

pytestmark = [pytest.mark.topology("cluster"), pytest.mark.engine("ollama")]


@dataclass
class Site:
    """The lab, the two hosts backed up, this run's S3 prefix and inventory overlay, and what the tests made."""

    lab: Lab
    storage_host: str
    node: str
    prefix: str
    overlay: Path
    s3: object
    started: float = 0.0
    chroma_since: int = 0
    backup_ids: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Output of the runs made with -vvv, which must hold no secret.
    verbose_outputs: list[str] = field(default_factory=list)

    def playbook(self, name: str, extra_vars: dict | None = None, *, expect_rc: int = 0, timing: str = "",
                 verbose: bool = False, args: tuple[str, ...] = ()):
        started = time.monotonic()
        done = self.lab.run_playbook(PLAYBOOKS / name, extra_vars, env=ENV,
                                     args=("-i", str(self.overlay), *args, *(["-vvv"] if verbose else [])),
                                     check=False, timeout=900)
        if timing:
            self.timings[timing] = time.monotonic() - started
        assert done.returncode == expect_rc, f"{name} exited {done.returncode}:\n{done.stdout[-8000:]}"
        return done.stdout

    def ssh(self, host: str, command: list[str] | str, check: bool = True) -> str:
        return self.lab.ssh(host, command, check=check).stdout

    def psql(self, database: str, sql: str, check: bool = True) -> str:
        return self.ssh(self.storage_host, [
            "env", f"PGPASSWORD={SETTINGS['lab_storage_pg_password']}", "psql", "--no-psqlrc", "--tuples-only",
            "--no-align", "--host=127.0.0.1", f"--username={SETTINGS['lab_storage_pg_user']}",
            f"--dbname={database}", "--command", sql], check=check).strip()

    def s3_key(self, *names: str) -> str:
        return "/".join((self.prefix, *names))

    def s3_keys(self, *names: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=SETTINGS["lab_storage_s3_bucket"],
                                                                  Prefix=self.s3_key(*names) + "/")
        return sorted(item["Key"] for page in pages for item in page.get("Contents") or [])

    def s3_get(self, *names: str) -> bytes:
        return self.s3.get_object(Bucket=SETTINGS["lab_storage_s3_bucket"], Key=self.s3_key(*names))["Body"].read()


def storage_sources() -> list[dict]:
    return [
        {"type": "postgres", "name": "pg", "databases": [PG_DATABASE], "host": "127.0.0.1",
         "port": SETTINGS["lab_storage_pg_port"], "user": SETTINGS["lab_storage_pg_user"],
         "password": SETTINGS["lab_storage_pg_password"]},
        {"type": "directory", "name": "chroma", "path": SETTINGS["lab_storage_chroma_path"],
         "stop_services": ["chroma"]},
        {"type": "qdrant", "name": "qdrant", "url": f"http://127.0.0.1:{SETTINGS['lab_storage_qdrant_port']}",
         "collections": [QDRANT_COLLECTION]},
    ]


def write_overlay(path: Path, lab: Lab, storage_host: str, node: str, prefix: str) -> None:
    """Inventory that the site's host_vars would hold: each host's sources, destination and key."""
    overlay = {"all": {"children": {
        "storage": {"hosts": {storage_host: {
            "backup_sources": storage_sources(), "backup_encryption_key": KEY, "backup_split_size_mb": 4,
            "backup_destination": storage.s3_destination(lab, prefix)}}},
        "ai_nodes": {"hosts": {node: {
            "backup_engine_url": f"http://{lab.hosts[node].address}:11434",
            "backup_sources": [{"type": "config", "name": "config", "paths": [CONFIG_DIR]},
                               {"type": "models", "name": "models", "models_dir": MODELS_DIR, "models": [MODEL]}],
            "backup_destination": {"path": f"{SCRATCH}/local"},
            # Unencrypted, whatever key the lab inventory gives the AI nodes (their backups before a rollout).
            "backup_encryption_key": ""}}},
    }}}
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))


@pytest.fixture(scope="module")
def site(deployed: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    lab = deployed
    storage.ensure(lab, ENV)
    storage_host, node = storage.host(lab), lab.group("ai_nodes")[0]
    prefix = f"nti-test-{uuid.uuid4().hex[:8]}"
    overlay = tmp_path_factory.mktemp("backup") / "overlay.yml"
    write_overlay(overlay, lab, storage_host, node, prefix)
    the_site = Site(lab, storage_host, node, prefix, overlay, storage.s3_client(lab))
    try:
        yield the_site
    finally:
        clean_up(the_site)
        print("\nbackup round trip timings (s): " + json.dumps({k: round(v, 1) for k, v in the_site.timings.items()}))


def clean_up(site: Site) -> None:
    """Everything the tests made: scratch services, databases, collections, directories, objects, metrics."""
    lab, host = site.lab, site.storage_host
    lab.ssh(host, f"systemctl stop {RESTORED_CHROMA_UNIT}; systemctl reset-failed {RESTORED_CHROMA_UNIT}; "
                  "systemctl start s3rver", check=False)
    for suffix in SCRATCH_DATABASES:
        site.psql("postgres", f'DROP DATABASE IF EXISTS "{PG_DATABASE}_{suffix}" WITH (FORCE)', check=False)
    site.psql(PG_DATABASE, "DELETE FROM chunks WHERE id > %d" % SETTINGS["lab_storage_pg_rows"], check=False)
    for suffix in SCRATCH_DATABASES:
        qdrant_request(site, "DELETE", f"/collections/{QDRANT_COLLECTION}_{suffix}")
    for name in (host, site.node):
        lab.ssh(name, ["rm", "-rf", SCRATCH, ROLE_WORK_DIR, VERIFY_WORK_DIR, METRICS_FILE, METRICS_FILE + ".lock"],
                check=False)
        lab.ssh(name, ["rmdir", "--ignore-fail-on-non-empty", str(Path(ROLE_WORK_DIR).parent)], check=False)
    wait_until(lambda: s3_answers(site), deadline_s=60, what="s3rver to answer again")
    storage.delete_prefix(site.s3, site.prefix + "/")
    # The upload cut off by the S3 fault stays open in s3rver, which cannot list open uploads: remove it there.
    uploads = f"{SETTINGS['lab_storage_s3_path']}/{SETTINGS['lab_storage_s3_bucket']}/._S3rver_uploads"
    lab.ssh(host, f"for d in {uploads}/*/; do grep -qs '^{site.prefix}/' \"$d/key\" && rm -rf \"$d\"; done; true",
            check=False)


def s3_answers(site: Site) -> bool:
    try:
        site.s3.head_bucket(Bucket=SETTINGS["lab_storage_s3_bucket"])
    except (BotoCoreError, ClientError):
        return False
    return True


def qdrant_request(site: Site, method: str, path: str) -> dict | None:
    url = f"http://{site.lab.hosts[site.storage_host].address}:{SETTINGS['lab_storage_qdrant_port']}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError:
        return None


# -- what the data looks like ------------------------------------------------------------------------------------


def pgvector_facts(site: Site, database: str) -> dict:
    """Rows, an md5 over every embedding in id order, exact top-5 neighbours of three rows, and the HNSW index."""
    neighbours = [site.psql(database, f"SELECT string_agg(id::text, ',' ORDER BY distance, id) FROM (SELECT id, "
                                      f"embedding <-> (SELECT embedding FROM chunks WHERE id = {probe}) AS distance "
                                      f"FROM chunks ORDER BY distance, id LIMIT 5) AS nearest")
                  for probe in (1, 777, 1999)]
    return {
        "rows": site.psql(database, "SELECT (SELECT count(*) FROM chunks) || '/' || (SELECT count(*) FROM documents)"),
        "md5": site.psql(database, "SELECT md5(string_agg(embedding::text, ';' ORDER BY id)) FROM chunks"),
        "neighbours": neighbours,
        "index": site.psql(database, "SELECT i.indexdef || ' valid=' || x.indisvalid FROM pg_indexes i JOIN pg_class c "
                                     "ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid "
                                     "WHERE i.indexname = 'chunks_embedding_hnsw'"),
    }


def chroma_facts(site: Site, port: int) -> dict:
    out = site.ssh(site.storage_host, [
        storage.CHROMA_PYTHON, f"{storage.TOOLS}/chroma_tool.py", "--port", str(port), "describe", "--collection",
        SETTINGS["lab_storage_chroma_collection"], "--dimensions", str(SETTINGS["lab_storage_dimensions"]),
        "--seed", str(SETTINGS["lab_storage_seed"])])
    return json.loads(out)


def qdrant_facts(site: Site, collection: str) -> dict:
    out = site.ssh(site.storage_host, [
        "python3", f"{storage.TOOLS}/qdrant_tool.py", "--url", f"http://127.0.0.1:{SETTINGS['lab_storage_qdrant_port']}",
        "describe", "--collection", collection])
    return json.loads(out)


def tree_digests(site: Site, host: str, root: str) -> dict[str, str]:
    """sha256 and mode of every file under ``root``, by path relative to it."""
    out = site.ssh(host, f"cd {root} && find . -type f -printf '%P %m\\n' | sort | while read -r path mode; do "
                         "echo \"$path $mode $(sha256sum \"$path\" | cut -d' ' -f1)\"; done")
    return {path: f"{mode} {digest}" for path, mode, digest in (line.split(" ") for line in out.splitlines())}


def metric(site: Site, host: str, name: str, backup: str) -> float | None:
    text = monitoring.node_metrics(site.lab, host)
    match = re.search(r'^%s\{backup="%s"\} (\S+)$' % (re.escape(name), re.escape(backup)), text, re.MULTILINE)
    return float(match.group(1)) if match else None


def restore_vars(site: Site, suffix: str, **extra) -> dict:
    """restore.yml's inputs for the storage host's set into fresh targets named with ``suffix``."""
    return {"restore_hosts": site.storage_host, "restore_directory_paths": {"chroma": f"{SCRATCH}/chroma-{suffix}"},
            "restore_postgres": {"host": "127.0.0.1", "user": SETTINGS["lab_storage_pg_user"],
                                 "password": SETTINGS["lab_storage_pg_password"],
                                 "databases": {PG_DATABASE: f"{PG_DATABASE}_{suffix}"}},
            "restore_qdrant": {"collections": {QDRANT_COLLECTION: f"{QDRANT_COLLECTION}_{suffix}"}}, **extra}


def nothing_restored(site: Site, suffix: str) -> None:
    databases = site.psql("postgres", "SELECT string_agg(datname, ',') FROM pg_database").split(",")
    assert f"{PG_DATABASE}_{suffix}" not in databases
    assert site.lab.ssh(site.storage_host, ["test", "-e", f"{SCRATCH}/chroma-{suffix}"], check=False).returncode == 1
    assert qdrant_request(site, "GET", f"/collections/{QDRANT_COLLECTION}_{suffix}") is None
    assert site.ssh(site.storage_host, ["systemctl", "is-active", "chroma"]).strip() == "active"


# -- the round trip ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backed_up(site: Site) -> Site:
    """One backup.yml run over the whole inventory: the storage host to S3 (encrypted), the AI node to its disk."""
    site.started = time.time()
    site.chroma_since = chroma_started_at(site)
    site.verbose_outputs.append(site.playbook("backup.yml", {"backup_hosts": f"{site.storage_host},{site.node}"},
                                              timing="backup.yml (storage host to S3, AI node to disk)", verbose=True))
    site.backup_ids[site.storage_host] = site.s3_get(site.storage_host, "latest").decode().strip()
    site.backup_ids[site.node] = site.ssh(site.node, ["cat", f"{SCRATCH}/local/{site.node}/latest"]).strip()
    return site


def test_backup_stores_every_source_and_publishes_it_last(backed_up: Site) -> None:
    site = backed_up
    storage_id, node_id = site.backup_ids[site.storage_host], site.backup_ids[site.node]
    manifest = json.loads(site.s3_get(site.storage_host, storage_id, "manifest.json"))
    assert [(source["name"], source["type"]) for source in manifest["sources"]] == [
        ("pg", "postgres"), ("chroma", "directory"), ("qdrant", "qdrant")]
    assert manifest["encryption"]["algorithm"] == "AES-256-GCM"
    assert len(manifest["parts"]) >= 2, "split_size_mb 4 should cut the storage host's backup into parts"
    stored = site.s3_keys(site.storage_host, storage_id)
    assert stored == sorted(site.s3_key(site.storage_host, storage_id, name)
                            for name in [part["name"] for part in manifest["parts"]] + ["manifest.json"])
    for part in manifest["parts"]:
        head = site.s3.head_object(Bucket=SETTINGS["lab_storage_s3_bucket"],
                                   Key=site.s3_key(site.storage_host, storage_id, part["name"]))
        assert (head["ContentLength"], head["Metadata"]["sha256"]) == (part["size"], part["sha256"])

    node_manifest = json.loads(site.ssh(site.node, ["cat", f"{SCRATCH}/local/{site.node}/{node_id}/manifest.json"]))
    assert [source["name"] for source in node_manifest["sources"]] == ["config", "models"]
    assert node_manifest["encryption"] is None
    pinned = pinned_digest(site.lab)
    assert [(model["name"], model["digest"]) for model in node_manifest["sources"][1]["models"]] == [(MODEL, pinned)]
    assert node_manifest["engine"]["models"][MODEL] == pinned

    # Chroma was stopped for a consistent copy and runs again; each host's metrics say when it succeeded.
    assert site.ssh(site.storage_host, ["systemctl", "is-active", "chroma"]).strip() == "active"
    assert chroma_started_at(site) > site.chroma_since
    for host in (site.storage_host, site.node):
        assert metric(site, host, "namtech_backup_last_success_timestamp_seconds", host) >= int(site.started)
        assert metric(site, host, "namtech_backup_last_failure_timestamp_seconds", host) == 0


def chroma_started_at(site: Site) -> int:
    """When the live Chroma service last became active (monotonic microseconds)."""
    out = site.ssh(site.storage_host, ["systemctl", "show", "--property=ActiveEnterTimestampMonotonic", "chroma"])
    return int(out.strip().split("=", 1)[1])


def pinned_digest(lab: Lab) -> str:
    """The digest the lab inventory pins the model to."""
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    return inventory["all"]["children"]["ai_nodes"]["vars"]["lab_model_digests"][MODEL]


@pytest.fixture(scope="module")
def restored(backed_up: Site) -> Iterator[Site]:
    """Both sets restored into fresh targets; a second Chroma server runs on the restored copy."""
    site = backed_up
    site.playbook("restore.yml", restore_vars(site, "restored"), timing="restore.yml (storage host from S3)")
    site.playbook("restore.yml", {"restore_hosts": site.node, "restore_config_root": f"{SCRATCH}/config-root",
                                  "restore_models_dir": f"{SCRATCH}/models"},
                  timing="restore.yml (AI node from disk)")
    site.lab.ssh(site.storage_host, f"systemctl stop {RESTORED_CHROMA_UNIT}; systemctl reset-failed "
                                    f"{RESTORED_CHROMA_UNIT}", check=False)
    site.ssh(site.storage_host, [
        "systemd-run", f"--unit={RESTORED_CHROMA_UNIT}", "--property=User=chroma",
        "--setenv=ANONYMIZED_TELEMETRY=False",
        f"{Path(storage.CHROMA_PYTHON).parent}/chroma", "run", "--path", f"{SCRATCH}/chroma-restored",
        "--host", "0.0.0.0", "--port", str(RESTORED_CHROMA_PORT)])
    address = site.lab.hosts[site.storage_host].address
    site.lab.wait_until_http(f"http://{address}:{RESTORED_CHROMA_PORT}/api/v2/heartbeat", deadline_s=120)
    try:
        yield site
    finally:
        site.lab.ssh(site.storage_host, ["systemctl", "stop", RESTORED_CHROMA_UNIT], check=False)


def test_pgvector_restores_with_the_same_rows_embeddings_neighbours_and_index(restored: Site) -> None:
    live, copy = pgvector_facts(restored, PG_DATABASE), pgvector_facts(restored, f"{PG_DATABASE}_restored")
    assert live["rows"] == f"{SETTINGS['lab_storage_pg_rows']}/{SETTINGS['lab_storage_pg_rows'] // 20}"
    assert "USING hnsw (embedding vector_l2_ops) valid=true" in live["index"]
    assert copy == live


def test_chroma_on_the_restored_directory_answers_like_the_live_server(restored: Site) -> None:
    live = chroma_facts(restored, SETTINGS["lab_storage_chroma_port"])
    copy = chroma_facts(restored, RESTORED_CHROMA_PORT)
    assert live["count"] == SETTINGS["lab_storage_chroma_count"]
    assert copy == live


def test_qdrant_collection_restores_with_the_same_points(restored: Site) -> None:
    live = qdrant_facts(restored, QDRANT_COLLECTION)
    copy = qdrant_facts(restored, f"{QDRANT_COLLECTION}_restored")
    assert live["count"] == SETTINGS["lab_storage_qdrant_points"]
    assert copy == live


def test_config_and_model_files_restore_byte_for_byte(restored: Site) -> None:
    site = restored
    config = tree_digests(site, site.node, CONFIG_DIR)
    assert config and tree_digests(site, site.node, f"{SCRATCH}/config-root{CONFIG_DIR}") == config

    restored_models = tree_digests(site, site.node, f"{SCRATCH}/models")
    live_models = tree_digests(site, site.node, MODELS_DIR)
    manifest_path = "manifests/registry.ollama.ai/library/lab-chat/v1"
    manifest = json.loads(site.ssh(site.node, ["cat", f"{MODELS_DIR}/{manifest_path}"]))
    blobs = {"blobs/" + layer["digest"].replace(":", "-") for layer in [manifest["config"], *manifest["layers"]]}
    assert set(restored_models) == {manifest_path, *blobs}
    assert restored_models == {path: live_models[path] for path in restored_models}
    for blob in blobs:
        assert restored_models[blob].split(" ")[1] == blob.removeprefix("blobs/sha256-")


# -- a new node --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_node(backed_up: Site) -> Iterator[str]:
    """The spare lab host replaced by a new machine (base image, empty disk); replaced again afterwards."""
    spares = backed_up.lab.group("spare_ai_nodes")
    if not spares:
        pytest.skip("this topology has no spare host to stand for a new node (the cluster has ai4)")
    backed_up.lab.replace_host(spares[0])
    try:
        yield spares[0]
    finally:
        backed_up.lab.replace_host(spares[0])


@contextlib.contextmanager
def gone_upstream(lab: Lab, model: str) -> Iterator[str]:
    """The model's manifest removed from the lab's registry, as when a pinned version is no longer published."""
    name, tag = model.split(":")
    path = f"{artifact_host.REMOTE_ROOT}/v2/library/{name}/manifests/{tag}"
    host = lab.group("artifacts")[0]
    lab.ssh(host, ["mv", path, path + ".gone"])
    try:
        yield f"http://{lab.hosts[host].address}:{artifact_host.PORT}/v2/library/{name}/manifests/{tag}"
    finally:
        lab.ssh(host, ["mv", path + ".gone", path])


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_new_node_gets_its_pinned_model_from_s3_when_it_is_gone_upstream(
        backed_up: Site, new_node: str, tmp_path: Path) -> None:
    """An AI node's models go to S3; a new machine restores them and the ollama role deploys it without a pull."""
    site, source = backed_up, backed_up.node
    to_s3 = {"backup_destination": storage.s3_destination(site.lab, site.prefix), "backup_encryption_key": KEY}
    site.playbook("backup.yml", {"backup_hosts": source, **to_s3}, timing="backup.yml (AI node to S3)")
    backup_id = site.s3_get(source, "latest").decode().strip()
    assert site.lab.ssh(new_node, ["test", "-e", MODELS_DIR], check=False).returncode == 1, "not a new machine"

    as_ai_node = tmp_path / "new-node.yml"
    as_ai_node.write_text(yaml.safe_dump({"all": {"children": {"ai_nodes": {"hosts": {new_node: None}}}}}))
    with gone_upstream(site.lab, MODEL) as manifest_url:
        assert http_status(manifest_url) == 404
        site.playbook("restore.yml", {"restore_hosts": new_node, "restore_name": source, "restore_backup": backup_id,
                                      "restore_sources": ["models"], "restore_destination": to_s3["backup_destination"],
                                      "restore_encryption_key": KEY}, timing="restore.yml (models onto a new node)")
        site.playbook("ai_nodes.yml", args=("-i", str(as_ai_node), "--limit", new_node),
                      timing="ai_nodes.yml (the new node, model already restored)")

    pinned = pinned_digest(site.lab)
    with urllib.request.urlopen(f"http://{site.lab.hosts[new_node].address}:11434/api/tags", timeout=10) as response:
        served = {model["name"]: model["digest"] for model in json.loads(response.read())["models"]}
    assert served.get(MODEL) == pinned, served
    answer = generate(site.lab.hosts[new_node].address, "assistant")
    assert answer["done"] and answer["response"], answer
    live, on_new_node = tree_digests(site, source, MODELS_DIR), tree_digests(site, new_node, MODELS_DIR)
    pinned_files = {PINNED_MANIFEST, *model_blobs(site, source)}
    assert {path: on_new_node.get(path) for path in pinned_files} == {path: live[path] for path in pinned_files}


def generate(address: str, model: str) -> dict:
    body = json.dumps({"model": model, "prompt": "Say hello.", "stream": False}).encode()
    request = urllib.request.Request(f"http://{address}:11434/api/generate", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def model_blobs(site: Site, host: str) -> set[str]:
    """The blobs the pinned model's manifest names, as paths under the model store."""
    manifest = json.loads(site.ssh(host, ["cat", f"{MODELS_DIR}/{PINNED_MANIFEST}"]))
    return {"blobs/" + layer["digest"].replace(":", "-") for layer in [manifest["config"], *manifest["layers"]]}


def test_a_new_node_gets_the_vector_store_directory_back_from_s3(backed_up: Site, new_node: str) -> None:
    """The storage host's Chroma directory restored onto a new machine equals the same backup restored at home."""
    site = backed_up
    backup_id = site.backup_ids[site.storage_host]
    fresh = {"restore_name": site.storage_host, "restore_backup": backup_id, "restore_sources": ["chroma"],
             "restore_destination": storage.s3_destination(site.lab, site.prefix), "restore_encryption_key": KEY,
             "restore_directory_paths": {"chroma": f"{SCRATCH}/chroma-new-node"}}
    site.playbook("restore.yml", {"restore_hosts": new_node, **fresh}, timing="restore.yml (Chroma onto a new node)")
    site.playbook("restore.yml", {"restore_hosts": site.storage_host, **fresh})
    at_home = tree_digests(site, site.storage_host, f"{SCRATCH}/chroma-new-node")
    assert at_home and any(path.endswith("chroma.sqlite3") for path in at_home), at_home
    assert tree_digests(site, new_node, f"{SCRATCH}/chroma-new-node") == at_home


# -- the restore drill --------------------------------------------------------------------------------------------


def test_verify_backup_restores_to_scratch_and_compares_with_the_live_data(backed_up: Site) -> None:
    site = backed_up
    # Everything defaults from the storage host's inventory: its set, destination, key and postgres connection.
    out = site.playbook("verify_backup.yml", timing="verify_backup.yml (storage host)")
    backup_id = site.backup_ids[site.storage_host]
    rows, docs = SETTINGS["lab_storage_pg_rows"], SETTINGS["lab_storage_pg_rows"] // 20
    assert f"{PG_DATABASE}: public.chunks|{rows}, public.documents|{docs} (table|rows), restored as live." in out
    assert f"{QDRANT_COLLECTION}: {SETTINGS['lab_storage_qdrant_points']} points, restored as live." in out
    assert (f"Backup {backup_id} of {site.storage_host} " in out
            and "pg, chroma, qdrant restored into scratch targets" in out
            and "1 file source(s) re-read and equal to the manifest" in out), out[-3000:]

    # A live table that moved on since the backup: the drill says so, and still removes its scratch database.
    site.psql(PG_DATABASE, f"INSERT INTO chunks SELECT {rows + 1}, document_id, content, embedding FROM chunks "
                           "WHERE id = 1")
    try:
        out = site.playbook("verify_backup.yml", expect_rc=2)
    finally:
        site.psql(PG_DATABASE, f"DELETE FROM chunks WHERE id = {rows + 1}")
    assert (f"Database {PG_DATABASE} restored from {backup_id} as {PG_DATABASE}_verify has other row counts than "
            f"the live one (table|rows): restored public.chunks|{rows}, public.documents|{docs}; live "
            f"public.chunks|{rows + 1}, public.documents|{docs}.") in out
    assert f"{PG_DATABASE}_verify" not in site.psql("postgres", "SELECT string_agg(datname, ',') FROM pg_database")
    assert site.lab.ssh(site.storage_host, ["test", "-e", f"{VERIFY_WORK_DIR}/{site.storage_host}"],
                        check=False).returncode == 1


# -- faults ---------------------------------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_before_anything_is_stopped_or_written(backed_up: Site) -> None:
    site = backed_up
    # The live Chroma would be stopped for the restore: a refused backup must not even get that far.
    out = site.playbook("restore.yml", restore_vars(site, "wrongkey", restore_encryption_key=WRONG_KEY,
                                                    restore_stop_services=["chroma"]), expect_rc=2, verbose=True)
    site.verbose_outputs.append(out)
    backup_id = site.backup_ids[site.storage_host]
    assert (f"wrong encryption key: backup {backup_id} was encrypted with another key. Nothing was restored") in out
    nothing_restored(site, "wrongkey")


def test_a_damaged_part_on_s3_is_refused_before_anything_changes(backed_up: Site) -> None:
    site = backed_up
    backup_id = site.backup_ids[site.storage_host]
    manifest = json.loads(site.s3_get(site.storage_host, backup_id, "manifest.json"))
    part = manifest["parts"][-1]
    key = site.s3_key(site.storage_host, backup_id, part["name"])
    bucket = SETTINGS["lab_storage_s3_bucket"]
    original = site.s3.get_object(Bucket=bucket, Key=key)
    good = original["Body"].read()
    bad = good[:100] + bytes([good[100] ^ 0x01]) + good[101:]
    site.s3.put_object(Bucket=bucket, Key=key, Body=bad, Metadata=original["Metadata"])  # silent bit rot
    try:
        out = site.playbook("restore.yml", restore_vars(site, "damaged", restore_stop_services=["chroma"]),
                            expect_rc=2)
    finally:
        site.s3.put_object(Bucket=bucket, Key=key, Body=good, Metadata=original["Metadata"])
    assert (f"backup {backup_id} is damaged: {part['name']} has sha256 {hashlib.sha256(bad).hexdigest()} and "
            f"{len(bad)} bytes, its manifest says {part['sha256']} and {part['size']} bytes. Nothing was restored; "
            "restore another backup (backup=<id>)") in out
    nothing_restored(site, "damaged")


def test_s3_going_away_mid_upload_publishes_nothing_and_the_next_run_succeeds(backed_up: Site) -> None:
    site = backed_up
    host = site.storage_host
    site.ssh(host, f"mkdir -p {SCRATCH}/bulk && for n in 1 2 3; do head -c {BULK_MIB // 3}M /dev/urandom "
                   f"> {SCRATCH}/bulk/blob-$n; done")
    bulk = {"backup_hosts": host, "backup_name": BULK_SET, "backup_split_size_mb": 8,
            "backup_sources": [{"type": "directory", "name": "bulk", "path": f"{SCRATCH}/bulk"}],
            "backup_retention": {"keep_last": 1}}
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(out=site.lab.run_playbook(
        PLAYBOOKS / "backup.yml", bulk, env=ENV, args=("-i", str(site.overlay)), check=False, timeout=900)))
    run.start()
    try:
        wait_until(lambda: any("/part-" in key for key in site.s3_keys(BULK_SET)), deadline_s=300, interval_s=0.1,
                   what="the first part of the bulk backup in S3")
        site.ssh(host, ["systemctl", "stop", "s3rver"])
        run.join(timeout=900)
    finally:
        site.ssh(host, ["systemctl", "start", "s3rver"])
        run.join(timeout=900)
    wait_until(lambda: s3_answers(site), deadline_s=60, what="s3rver to answer again")
    failed = outcome["out"]
    assert failed.returncode == 2, failed.stdout[-6000:]
    match = re.search(r"cannot upload (part-\d+) of backup (\S+Z-%s) to s3://" % re.escape(host), failed.stdout)
    assert match, failed.stdout[-6000:]
    orphan = match.group(2)
    assert "cannot be reached" in failed.stdout
    assert ("they have no manifest, so restore ignores them and retention removes them later" in failed.stdout
            or f"Backup {orphan} was not published (no manifest, latest unchanged)" in failed.stdout)
    left = site.s3_keys(BULK_SET, orphan)
    assert left and not any(key.endswith("/manifest.json") for key in left)
    assert site.s3_keys(BULK_SET) == left, "nothing but the orphan's parts, and no latest pointer"
    assert metric(site, host, "namtech_backup_last_failure_timestamp_seconds", BULK_SET) > 0
    assert metric(site, host, "namtech_backup_last_success_timestamp_seconds", BULK_SET) == 0

    out = site.playbook("backup.yml", bulk, timing=f"backup.yml ({BULK_MIB} MiB directory to S3, after the fault)")
    latest = site.s3_get(BULK_SET, "latest").decode().strip()
    assert latest != orphan and site.s3_key(BULK_SET, latest, "manifest.json") in site.s3_keys(BULK_SET, latest)
    assert site.s3_keys(BULK_SET, orphan) == [], "retention removes the interrupted backup's parts"
    assert f"retention deleted {orphan}" in out
    assert metric(site, host, "namtech_backup_last_success_timestamp_seconds", BULK_SET) > 0


def test_a_full_disk_on_the_node_fails_clearly_and_keeps_the_last_good_backup(backed_up: Site) -> None:
    """A node's local backups on its lab disk: one succeeds, the disk fills, the next fails and writes nothing."""
    site, node = backed_up, backed_up.node
    backups = f"{site.lab.hosts[node].disk_path}/nti-backup-test"
    site.ssh(node, f"mkdir -p {SCRATCH}/bulk-node && head -c 24M /dev/urandom > {SCRATCH}/bulk-node/blob")
    on_disk = {"backup_hosts": node, "backup_name": DISK_SET, "backup_destination": {"path": backups},
               "backup_sources": [{"type": "directory", "name": "bulk", "path": f"{SCRATCH}/bulk-node"}]}
    try:
        site.playbook("backup.yml", on_disk)
        good = site.ssh(node, ["cat", f"{backups}/{DISK_SET}/latest"]).strip()
        before = tree_digests(site, node, f"{backups}/{DISK_SET}")
        with site.lab.disk_full(node):
            out = site.playbook("backup.yml", on_disk, expect_rc=2)
            after = tree_digests(site, node, f"{backups}/{DISK_SET}")
        assert "the disk is full: free space there or choose another place" in out, out[-4000:]
        assert re.search(r"Backup \S+Z-%s was not published \(no manifest, latest unchanged\)" % re.escape(node),
                         out), out[-4000:]
        assert after == before, "the failed run left files next to the good backup"
        assert site.ssh(node, ["cat", f"{backups}/{DISK_SET}/latest"]).strip() == good
        assert metric(site, node, "namtech_backup_last_failure_timestamp_seconds", DISK_SET) > 0
    finally:
        site.ssh(node, ["rm", "-rf", backups, f"{SCRATCH}/bulk-node"], check=False)


def test_verbose_runs_print_no_secret(backed_up: Site) -> None:
    """backup.yml and restore.yml with -vvv: the encryption keys, the S3 secret key and the database password stay
    out of the output (the runs are the backup fixture's and, when it ran before, the wrong-key restore's)."""
    site = backed_up
    secrets = {"encryption key": KEY, "wrong key": WRONG_KEY, "S3 secret key": SETTINGS["lab_storage_s3_secret_key"],
               "PostgreSQL password": SETTINGS["lab_storage_pg_password"]}
    leaked = {name for name, secret in secrets.items() for out in site.verbose_outputs if secret in out}
    assert leaked == set(), leaked
    assert all("ESTABLISH SSH CONNECTION" in out for out in site.verbose_outputs)  # really -vvv
