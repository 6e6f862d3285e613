"""The lab's storage host: what tests/lab/playbooks/storage_services.yml installs there, and how tests reach it.

``ensure(lab, env)`` applies the playbook unless the host already runs exactly what this checkout describes (a
stamp of the playbook and its files, written by the playbook's last task); ``s3_client(lab)`` is a boto3 client
for the host's S3-compatible server; ``SETTINGS`` are the values of settings.yml.
"""

import hashlib
from pathlib import Path

import yaml

from lab.core import Lab

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE.parent / "playbooks" / "storage_services.yml"
QDRANT_STANDIN = HERE.parent / "qdrant_standin"
SETTINGS = yaml.safe_load((HERE / "settings.yml").read_text())
ROOT = SETTINGS["lab_storage_root"]
TOOLS = f"{ROOT}/storage"
STAMP = f"{TOOLS}/applied.sha256"
CHROMA_PYTHON = f"{ROOT}/chroma-{SETTINGS['lab_storage_chroma_version']}/venv/bin/python"
SERVICES = ("postgresql", "chroma", "qdrant", "s3rver")
PLAYBOOK_TIMEOUT_S = 1800


def stamp() -> str:
    """A digest of everything the playbook installs from this checkout."""
    digest = hashlib.sha256()
    files = [PLAYBOOK, *sorted(HERE.iterdir()), *sorted(QDRANT_STANDIN.glob("*.py"))]
    for path in files:
        if path.is_file() and path.suffix in (".yml", ".py", ".sql"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def host(lab: Lab) -> str:
    return lab.group("storage")[0]


def is_current(lab: Lab, wanted: str) -> bool:
    applied = lab.ssh(host(lab), ["cat", STAMP], check=False).stdout.strip()
    if applied != wanted:
        return False
    return lab.ssh(host(lab), ["systemctl", "is-active", "--quiet", *SERVICES], check=False).returncode == 0


def ensure(lab: Lab, env: dict[str, str]) -> bool:
    """Apply the playbook when the host does not run what it describes; whether it ran."""
    wanted = stamp()
    if is_current(lab, wanted):
        return False
    done = lab.run_playbook(PLAYBOOK, {"lab_storage_stamp": wanted}, env=env, check=False,
                            timeout=PLAYBOOK_TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"{PLAYBOOK.name} failed:\n{done.stdout[-6000:]}")
    return True


def s3_endpoint(lab: Lab) -> str:
    return f"http://{lab.hosts[host(lab)].address}:{SETTINGS['lab_storage_s3_port']}"


def s3_client(lab: Lab):
    """boto3's S3 client for the lab's server (path-style addressing, its fixed credentials)."""
    import boto3  # noqa: PLC0415 - only tests and benchmarks that reach S3 need it
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client("s3", endpoint_url=s3_endpoint(lab), region_name="us-east-1",
                        aws_access_key_id=SETTINGS["lab_storage_s3_access_key"],
                        aws_secret_access_key=SETTINGS["lab_storage_s3_secret_key"],
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def s3_destination(lab: Lab, prefix: str, part_size_mb: int = 5) -> dict:
    """ai_backup's destination option for the lab's bucket, under ``prefix``."""
    return {"s3": {"bucket": SETTINGS["lab_storage_s3_bucket"], "prefix": prefix, "endpoint_url": s3_endpoint(lab),
                   "region": "us-east-1", "access_key": SETTINGS["lab_storage_s3_access_key"],
                   "secret_key": SETTINGS["lab_storage_s3_secret_key"], "addressing_style": "path",
                   "part_size_mb": part_size_mb}}


def delete_prefix(client, prefix: str) -> int:
    """Remove every object under ``prefix`` in the lab's bucket; how many there were."""
    bucket = SETTINGS["lab_storage_s3_bucket"]
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents") or []]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]],
                                                     "Quiet": True})
    return len(keys)
