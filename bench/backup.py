"""Backup throughput and memory: ai_backup against a plain boto3 upload_file of the same bytes, to the lab's S3.

Needs a running lab with a storage host (`make lab-up`); applies tests/lab/playbooks/storage_services.yml first
when the host does not run it yet. On the storage host it writes --size-gib of incompressible data, backs it up
with the ai_backup module (through Ansible, as a playbook would run it; also encrypted unless --no-encrypted),
then uploads the same file with boto3's upload_file and the same part size and concurrency, all in one run. It
prints throughput (MiB/s of bytes stored), peak memory (the module's process and the plain upload's, ru_maxrss)
and their ratios, and appends them to docs/benchmarks.md. Everything it wrote is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

import yaml
from lab import storage
from lab.core import Lab, ansible_command, ansible_env
from lab.paths import INVENTORY_PATH
from lab.proc import run
from lab.topology import load_topology
from report import append_section

REPO = Path(__file__).resolve().parent.parent
WORK = "/var/lib/nti-bench-backup"  # on the lab host
MAXRSS_FILE = f"{WORK}/maxrss"
KEY = "lab-only-benchmark-key-not-a-secret"
MIB = 1024 * 1024

# The interpreter Ansible runs the module with: python3 as a child, whose peak RSS (ru_maxrss) it records.
MEASURING_PYTHON = """#!/usr/bin/python3
import resource, subprocess, sys
code = subprocess.call(["/usr/bin/python3", *sys.argv[1:]])
with open(%r, "a") as out:
    out.write("%%d\\n" %% resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
""" % MAXRSS_FILE

# The plain upload, with the module's transfer settings; prints seconds, bytes and its own peak RSS.
PLAIN_UPLOAD = """
import json, resource, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
path, endpoint, bucket, key, access, secret, part_mb, concurrency = sys.argv[1:9]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access,
                      aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))
transfer = TransferConfig(multipart_threshold=int(part_mb) << 20, multipart_chunksize=int(part_mb) << 20,
                          max_concurrency=int(concurrency), use_threads=int(concurrency) > 1)
started = time.monotonic()
client.upload_file(path, bucket, key, Config=transfer)
seconds = time.monotonic() - started
size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
print(json.dumps({"seconds": seconds, "bytes": size,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def lab_from_inventory() -> Lab | None:
    """The lab the generated inventory describes (no container runtime needed to read it)."""
    if not INVENTORY_PATH.is_file():
        return None
    settings = yaml.safe_load(INVENTORY_PATH.read_text())["all"]["vars"]
    lab = Lab(load_topology(settings["lab_topology"], settings["ai_engine"]))
    return lab if lab.group("storage") else None


def collections_env() -> dict[str, str]:
    return {"ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH") or str(REPO / ".build")}


def prepare(lab: Lab, host: str, size_gib: float) -> None:
    lab.ssh(host, f"rm -rf {WORK} && mkdir -p {WORK}/data {WORK}/scratch && "
                  f"head -c {int(size_gib * 1024)}M /dev/urandom > {WORK}/data/blob", timeout=1800)
    lab.ssh(host, f"cat > {WORK}/python && chmod 0755 {WORK}/python", input_text=MEASURING_PYTHON)
    done = lab.ansible(host, "ansible.builtin.apt", "name=python3-boto3,python3-cryptography state=present")
    assert done.returncode == 0, done.stdout


def module_backup(lab: Lab, host: str, prefix: str, args: argparse.Namespace, encrypted: bool) -> dict:
    """One ai_backup run through Ansible; the module's result and its process's peak RSS."""
    options = {"name": "bench", "sources": [{"type": "directory", "name": "data", "path": f"{WORK}/data"}],
               "destination": storage.s3_destination(lab, prefix, args.part_size_mb),
               "split_size_mb": args.split_size_mb, "work_dir": f"{WORK}/scratch"}
    options["destination"]["s3"]["max_concurrency"] = args.concurrency
    if encrypted:
        options["encryption_key"] = KEY
    lab.ssh(host, ["rm", "-f", MAXRSS_FILE])
    command = [ansible_command("ansible"), "-i", str(INVENTORY_PATH), host, "-m", "namtech.internal_ai.ai_backup",
               "-a", json.dumps(options), "-e", f"ansible_python_interpreter={WORK}/python", "-o"]
    done = run(command, timeout=3600, check=False, env=ansible_env(collections_env()))
    line = next((line for line in done.stdout.splitlines() if line.startswith(host)), done.stdout)
    if done.returncode != 0 or "=>" not in line:
        raise SystemExit(f"ai_backup failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    result = json.loads(line.split("=>", 1)[1])
    maxrss = int(lab.ssh(host, ["cat", MAXRSS_FILE]).stdout.split()[-1])
    return {"seconds": result["duration"], "bytes": result["size"], "maxrss_kib": maxrss}


def plain_upload(lab: Lab, host: str, prefix: str, args: argparse.Namespace) -> dict:
    settings = storage.SETTINGS
    argv = ["python3", "-", f"{WORK}/data/blob", storage.s3_endpoint(lab), settings["lab_storage_s3_bucket"],
            f"{prefix}/plain/blob", settings["lab_storage_s3_access_key"], settings["lab_storage_s3_secret_key"],
            str(args.part_size_mb), str(args.concurrency)]
    done = lab.ssh(host, shlex.join(argv), input_text=PLAIN_UPLOAD, timeout=3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def rate(measure: dict) -> float:
    return measure["bytes"] / MIB / measure["seconds"]


def table(results: dict[str, dict], plain: dict) -> list[str]:
    rows = ["| upload | MiB stored | seconds | MiB/s | peak RSS MiB | throughput vs plain | memory vs plain |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, measure in [*results.items(), ("plain boto3 upload_file", plain)]:
        rows.append("| %s | %.0f | %.1f | %.1f | %.0f | %.2f | %.2f |" % (
            name, measure["bytes"] / MIB, measure["seconds"], rate(measure), measure["maxrss_kib"] / 1024,
            rate(measure) / rate(plain), measure["maxrss_kib"] / plain["maxrss_kib"]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0, help="incompressible data to back up (default 2)")
    parser.add_argument("--part-size-mb", type=int, default=64, help="multipart part size, both uploads (default 64)")
    parser.add_argument("--concurrency", type=int, default=2, help="parts in flight, both uploads (default 2)")
    parser.add_argument("--split-size-mb", type=int, default=1024, help="ai_backup's split_size_mb (default 1024)")
    parser.add_argument("--no-encrypted", action="store_true", help="skip the encrypted ai_backup run")
    args = parser.parse_args(argv)
    lab = lab_from_inventory()
    if lab is None:
        print("needs a running lab with a storage host: make lab-up (TOPOLOGY=cluster)", file=sys.stderr)
        return 2
    host = storage.host(lab)
    storage.ensure(lab, collections_env())
    prefix = f"nti-bench-{uuid.uuid4().hex[:8]}"
    client = storage.s3_client(lab)
    results = {}
    try:
        prepare(lab, host, args.size_gib)
        for name, encrypted in (("ai_backup", False), ("ai_backup, encrypted", True)):
            if encrypted and args.no_encrypted:
                continue
            results[name] = module_backup(lab, host, prefix, args, encrypted)
            storage.delete_prefix(client, prefix + "/")
        plain = plain_upload(lab, host, prefix, args)
    finally:
        storage.delete_prefix(client, prefix + "/")
        lab.ssh(host, ["rm", "-rf", WORK], check=False)
    rows = table(results, plain)
    rows += ["", "%.1f GiB of /dev/urandom in one file on %s, backed up as a directory source (a tar stream cut into "
                 "%d MiB parts, each spooled to disk, uploaded and checked) to s3rver on the same host; the plain "
                 "upload sends the file as is. Both: %d MiB multipart parts, %d in flight, boto3 %s. Peak RSS is "
                 "ru_maxrss of the process that ran the module (Ansible's interpreter) and of the plain upload's."
             % (args.size_gib, host, args.split_size_mb, args.part_size_mb, args.concurrency, boto3_version(lab, host))]
    append_section("Backup to S3: ai_backup against boto3 upload_file",
                   "PYTHONPATH=tests:bench .venv/bin/python bench/backup.py --size-gib %g" % args.size_gib, rows)
    return 0


def boto3_version(lab: Lab, host: str) -> str:
    return lab.ssh(host, ["python3", "-c", "import boto3; print(boto3.__version__)"]).stdout.strip()


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print("bench/backup.py took %.0f s" % (time.monotonic() - started))
    sys.exit(code)
