"""ai_backup and ai_restore against an S3-compatible server (moto's, on loopback), including the storage failing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is in requirements/dev.in")

from loopback import free_port  # noqa: E402

from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup, ai_restore  # noqa: E402

BUCKET = "ai-backups"
SECRET = "a long secret from ansible vault"


@pytest.fixture(scope="module")
def s3_url():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield "http://127.0.0.1:%d" % port
    server.stop()


@pytest.fixture
def s3(s3_url):
    client = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    yield client
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for item in page.get("Contents") or []]
    for key in keys:
        client.delete_object(Bucket=BUCKET, Key=key)
    client.delete_bucket(Bucket=BUCKET)


def keys(client, prefix=""):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents") or [])


def destination(url, **extra):
    s3 = {"endpoint_url": url, "bucket": BUCKET, "prefix": "site-a", "region": "us-east-1", "access_key": "test",
          "secret_key": "s3-secret-key", "addressing_style": "path", "retries": 0, "connect_timeout": 2.0}
    s3.update(extra)
    return {"s3": s3}


@pytest.fixture
def data(tmp_path):
    chroma = tmp_path / "chroma"
    (chroma / "index").mkdir(parents=True)
    (chroma / "chroma.sqlite3").write_bytes(os.urandom(2_500_000))
    (chroma / "index" / "vectors.bin").write_bytes(os.urandom(1_200_000))
    return chroma


def tree(root):
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(root).rglob("*")) if path.is_file()}


def backup(run_module, url, chroma, tmp_path, **extra):
    args = {"name": "node1", "host": "node1", "sources": [{"type": "directory", "name": "chroma",
                                                           "path": str(chroma)}],
            "destination": destination(url), "split_size_mb": 1, "encryption_key": SECRET,
            "work_dir": str(tmp_path)}
    args.update(extra)
    return run_module(ai_backup, args)


def test_round_trip_through_s3(s3, s3_url, data, tmp_path, run_module):
    result = backup(run_module, s3_url, data, tmp_path,
                    destination=destination(s3_url, sse="AES256", storage_class="STANDARD_IA"))
    assert result["exit_code"] == 0, result
    assert result["location"] == "s3://%s/site-a/node1" % BUCKET
    backup_id = result["backup_id"]
    assert keys(s3) == sorted(["site-a/node1/latest", "site-a/node1/%s/manifest.json" % backup_id] +
                              ["site-a/node1/%s/%s" % (backup_id, part["name"]) for part in result["parts"]])
    head = s3.head_object(Bucket=BUCKET, Key="site-a/node1/%s/part-00001" % backup_id)
    assert head["Metadata"]["sha256"] == result["parts"][0]["sha256"]
    assert (head["ServerSideEncryption"], head["StorageClass"]) == ("AES256", "STANDARD_IA")
    assert s3.get_object(Bucket=BUCKET, Key="site-a/node1/latest")["Body"].read() == (backup_id + "\n").encode()
    assert "s3-secret-key" not in repr(result)
    assert [name for name in os.listdir(tmp_path) if name.startswith("namtech-backup-")] == []

    fresh = tmp_path / "fresh"
    restored = run_module(ai_restore, {"name": "node1", "destination": destination(s3_url), "encryption_key": SECRET,
                                       "directory_paths": {"chroma": str(fresh)}, "work_dir": str(tmp_path)})
    assert restored["exit_code"] == 0, restored
    assert restored["backup_id"] == backup_id and restored["verified_parts"] == len(result["parts"])
    assert tree(fresh) == tree(data)
    assert [name for name in os.listdir(tmp_path) if name.startswith("namtech-backup-")] == []


def test_large_parts_go_up_in_multipart_uploads(s3, s3_url, tmp_path, run_module):
    big = tmp_path / "big"
    big.mkdir()
    (big / "weights.gguf").write_bytes(os.urandom(11 * 1024 * 1024))
    result = run_module(ai_backup, {"name": "node1", "sources": [{"type": "directory", "path": str(big)}],
                                    "destination": destination(s3_url, part_size_mb=5), "split_size_mb": 64})
    assert result["exit_code"] == 0, result
    assert len(result["parts"]) == 1
    head = s3.head_object(Bucket=BUCKET, Key="site-a/node1/%s/part-00001" % result["backup_id"])
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == result["parts"][0]["size"]


class CuttingProxy:
    """A TCP proxy in front of the S3 server that goes away for good after ``cut_after`` request bytes."""

    def __init__(self, target_port, cut_after):
        self.target_port = target_port
        self.cut_after = cut_after
        self.forwarded = 0
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.cut_done.is_set():
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source, sink, counts):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if counts:
                    with self.lock:
                        self.forwarded += len(data)
                        over = self.forwarded > self.cut_after
                    if over:
                        self.cut()
                        return
                sink.sendall(data)
        except OSError:
            pass

    def cut(self):
        self.cut_done.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self):
        self.cut()
        self.thread.join(timeout=5)


def test_s3_unreachable_mid_upload_publishes_nothing_and_the_next_run_succeeds(s3, s3_url, data, tmp_path,
                                                                               run_module):
    first = backup(run_module, s3_url, data, tmp_path)
    assert first["exit_code"] == 0
    proxy = CuttingProxy(int(s3_url.rsplit(":", 1)[1]), cut_after=1_500_000)
    try:
        proxied = "http://127.0.0.1:%d" % proxy.port
        failed = backup(run_module, proxied, data, tmp_path, destination=destination(proxied), host="node1a",
                        metrics_dir=str(tmp_path))
    finally:
        proxy.close()
    assert failed["failed"] is True
    assert failed["msg"].startswith("cannot upload part-0000")
    assert " to s3://%s/site-a/node1/" % BUCKET in failed["msg"]
    assert ": the connection to the S3 endpoint %s broke before it answered (" % proxied in failed["msg"] or \
        ": the S3 endpoint %s cannot be reached (" % proxied in failed["msg"], failed["msg"]
    assert "they have no manifest, so restore ignores them and retention removes them later" in failed["msg"]
    stored = keys(s3, "site-a/node1/")
    manifests = [key for key in stored if key.endswith("/manifest.json")]
    assert manifests == ["site-a/node1/%s/manifest.json" % first["backup_id"]]
    assert s3.get_object(Bucket=BUCKET, Key="site-a/node1/latest")["Body"].read() == \
        (first["backup_id"] + "\n").encode()
    orphans = sorted(set(key.split("/")[2] for key in stored if key.count("/") == 3) - {first["backup_id"]})
    assert len(orphans) == 1
    assert 'namtech_backup_last_failure_timestamp_seconds{backup="node1"} 0\n' not in \
        (tmp_path / "namtech_backup.prom").read_text()

    # The orphan must sort before the next run's id: same second otherwise.
    next_run = backup(run_module, s3_url, data, tmp_path, host="node1b", retention={"keep_last": 1})
    assert next_run["exit_code"] == 0, next_run
    deleted = [item["id"] for item in next_run["retention"]["delete"]]
    assert deleted == sorted([first["backup_id"], *orphans], reverse=True)
    assert set(key.split("/")[2] for key in keys(s3, "site-a/node1/") if key.count("/") == 3) == {
        next_run["backup_id"]}


def test_unreachable_endpoint_and_missing_bucket(tmp_path, data, run_module, s3, s3_url):
    url = "http://127.0.0.1:%d" % free_port()
    unreachable = backup(run_module, url, data, tmp_path)
    assert unreachable["msg"].startswith("cannot reach the bucket %s: the S3 endpoint %s cannot be reached ("
                                         % (BUCKET, url))
    # "latest" shows masked: the test's S3 secret key is "test", which Ansible hides wherever it appears.
    assert re.search(r"\)\. Check endpoint_url, the network and the firewall\. Backup \S+-node1 was not published "
                     r"\(no manifest, \S+ unchanged\)$", unreachable["msg"]), unreachable["msg"]
    missing = backup(run_module, s3_url, data, tmp_path, destination=destination(s3_url, bucket="nope"))
    assert missing["msg"].startswith("cannot reach the bucket nope: S3 answered ")


def test_bad_s3_options(tmp_path, data, run_module):
    small = backup(run_module, "http://127.0.0.1:1", data, tmp_path,
                   destination=destination("http://127.0.0.1:1", part_size_mb=4))
    assert small["msg"] == "s3.part_size_mb must be at least 5 (S3's smallest multipart part), got 4"
    kms = backup(run_module, "http://127.0.0.1:1", data, tmp_path,
                 destination=destination("http://127.0.0.1:1", sse_kms_key_id="key-1"))
    assert kms["msg"] == "destination.s3.sse_kms_key_id needs sse=aws:kms"
    both = run_module(ai_backup, {"sources": [{"type": "directory", "path": str(data)}],
                                  "destination": dict(destination("http://127.0.0.1:1"), path=str(tmp_path))})
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
