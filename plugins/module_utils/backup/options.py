# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The options ai_backup and ai_restore share (the destination), and the checks on them."""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.crypto import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.stores import BOTO3_IMPORT_ERROR, HAS_BOTO3

CHECKSUM_CHOICES = ["when_supported", "when_required"]


def s3_spec():
    return dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        endpoint_url=dict(type="str"),
        region=dict(type="str"),
        access_key=dict(type="str", no_log=True, aliases=["aws_access_key_id"]),
        secret_key=dict(type="str", no_log=True, aliases=["aws_secret_access_key"]),
        session_token=dict(type="str", no_log=True),
        addressing_style=dict(type="str", choices=["auto", "path", "virtual"], default="auto"),
        part_size_mb=dict(type="int", default=64),
        max_concurrency=dict(type="int", default=2),
        sse=dict(type="str", choices=["AES256", "aws:kms"]),
        sse_kms_key_id=dict(type="str", no_log=False),
        storage_class=dict(type="str"),
        request_checksum_calculation=dict(type="str", choices=CHECKSUM_CHOICES, default="when_required"),
        response_checksum_validation=dict(type="str", choices=CHECKSUM_CHOICES, default="when_required"),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        connect_timeout=dict(type="float", default=10.0),
        read_timeout=dict(type="float", default=60.0),
        retries=dict(type="int", default=2),
    )


def destination_spec():
    return dict(
        type="dict", required=True,
        options=dict(path=dict(type="path"), s3=dict(type="dict", options=s3_spec())),
        mutually_exclusive=[("path", "s3")],
        required_one_of=[("path", "s3")],
    )


def check_libraries(module, destination, encryption_key):
    """Fail with Ansible's usual message when a library the options need is missing."""
    if destination.get("s3") and not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    if encryption_key and not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    s3 = destination.get("s3") or {}
    if s3:
        for name in ("part_size_mb", "max_concurrency"):
            if s3[name] < 1:
                module.fail_json(msg="destination.s3.%s must be 1 or more (got %d)" % (name, s3[name]))
        if s3["retries"] < 0:
            module.fail_json(msg="destination.s3.retries must be 0 or more (got %d)" % s3["retries"])
        if s3["sse_kms_key_id"] and s3["sse"] != "aws:kms":
            module.fail_json(msg="destination.s3.sse_kms_key_id needs sse=aws:kms")
