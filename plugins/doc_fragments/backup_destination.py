# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Where ai_backup stores a backup set and ai_restore finds it: a local directory or an S3-compatible bucket."""

    DOCUMENTATION = r"""
options:
  destination:
    description:
      - Where the backups are stored. M(namtech.internal_ai.ai_restore) takes what M(namtech.internal_ai.ai_backup)
        was given. Exactly one of O(destination.path) and O(destination.s3).
    type: dict
    required: true
    suboptions:
      path:
        description:
          - A local directory (a mounted NAS share works).
        type: path
      s3:
        description:
          - An S3-compatible bucket (AWS S3, MinIO, Ceph RGW) through boto3.
        type: dict
        suboptions:
          bucket:
            description: The bucket, which must exist.
            type: str
            required: true
          prefix:
            description: A key prefix for the backups in the bucket.
            type: str
            default: ""
          endpoint_url:
            description:
              - The S3 endpoint for MinIO or Ceph, for example V(https://minio.example.com:9000); AWS when not set.
            type: str
          region:
            description: The region (AWS), for example V(eu-central-1).
            type: str
          access_key:
            description: The access key id; boto3's usual sources (environment, instance profile) when not set.
            type: str
            aliases: [aws_access_key_id]
          secret_key:
            description: The secret access key. Never logged.
            type: str
            aliases: [aws_secret_access_key]
          session_token:
            description: A session token for temporary credentials. Never logged.
            type: str
          addressing_style:
            description: V(path) puts the bucket in the path (MinIO, Ceph), V(virtual) in the host name.
            type: str
            choices: [auto, path, virtual]
            default: auto
          part_size_mb:
            description:
              - Size of each multipart upload part in MiB (at least 5). Memory and temporary disk per upload are
                bounded by it and O(destination.s3.max_concurrency).
            type: int
            default: 64
          max_concurrency:
            description: How many multipart parts are uploaded at once.
            type: int
            default: 2
          sse:
            description: Server-side encryption of the stored objects.
            type: str
            choices: [AES256, "aws:kms"]
          sse_kms_key_id:
            description: The KMS key for O(destination.s3.sse=aws:kms).
            type: str
          storage_class:
            description: The storage class of the stored objects, for example V(STANDARD_IA).
            type: str
          request_checksum_calculation:
            description:
              - botocore's request checksum setting. V(when_required) works with MinIO and Ceph, which do not accept
                every checksum newer botocore sends by default.
            type: str
            choices: [when_supported, when_required]
            default: when_required
          response_checksum_validation:
            description: botocore's response checksum setting.
            type: str
            choices: [when_supported, when_required]
            default: when_required
          validate_certs:
            description: Verify the endpoint's TLS certificate.
            type: bool
            default: true
          ca_path:
            description: PEM bundle of the CA that signed the endpoint's certificate.
            type: path
          connect_timeout:
            description: Seconds to wait for a connection.
            type: float
            default: 10.0
          read_timeout:
            description: Seconds to wait for each answer.
            type: float
            default: 60.0
          retries:
            description: How many times botocore retries a failed request.
            type: int
            default: 2
requirements:
  - boto3 (S3 destination)
"""
