# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where backups live: a local directory or S3-compatible object storage (AWS, MinIO, Ceph RGW) through boto3.

Both lay a backup set out the same way::

    <root>/<set name>/<backup id>/part-00001 ... part-NNNNN
    <root>/<set name>/<backup id>/manifest.json      written last, after every part is stored and verified
    <root>/<set name>/latest                         the newest published backup's id, updated after its manifest

A backup without a manifest is incomplete (interrupted): restore ignores it and retention removes it.
"""

from __future__ import annotations

import os
import shutil
import traceback

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.archive import FilePart, part_name
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    CHUNK_SIZE,
    BackupError,
    HashingReader,
    describe_os_error,
    fsync_directory,
    is_backup_id,
    remove_quietly,
    sha256_of_file,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import write_atomically

try:
    import boto3
    from boto3.exceptions import Boto3Error
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )
except ImportError:
    boto3 = None
    BOTO3_IMPORT_ERROR = traceback.format_exc()
else:
    BOTO3_IMPORT_ERROR = None

HAS_BOTO3 = boto3 is not None
MANIFEST_NAME = "manifest.json"
LATEST_NAME = "latest"
MEBIBYTE = 1024 * 1024
S3_MIN_PART_MB = 5


def damaged_part_error(backup_id, part, actual_sha, actual_size):
    return BackupError(
        "backup %s is damaged: %s has sha256 %s and %d bytes, its manifest says %s and %d bytes. Nothing was "
        "restored; restore another backup (backup=<id>)" % (backup_id, part["name"], actual_sha, actual_size,
                                                            part["sha256"], part["size"]))


def verify_part_file(path, part, backup_id):
    try:
        actual_sha, actual_size = sha256_of_file(path)
    except OSError as exc:
        raise BackupError(describe_os_error("read", path, exc)) from None
    if (actual_sha, actual_size) != (part["sha256"], part["size"]):
        raise damaged_part_error(backup_id, part, actual_sha, actual_size)


def newest_first(backups):
    return sorted(backups, key=lambda item: item["id"], reverse=True)


# -- local directory ---------------------------------------------------------------------------------


class LocalPart:
    def __init__(self, path, name):
        self.file = FilePart(path, name)

    def write(self, data):
        self.file.write(data)

    def commit(self):
        entry = self.file.finish()
        actual = os.path.getsize(self.file.path)
        if actual != entry["size"]:
            raise BackupError("%s holds %d bytes after writing %d; the disk dropped data" % (self.file.path, actual,
                                                                                             entry["size"]))
        return entry

    def abort(self):
        self.file.discard()


class LocalStore:
    """Backups of one set in a directory on this host (a mounted NAS share works too)."""

    kind = "local"

    def __init__(self, path, set_name):
        if not path or not os.path.isabs(path):
            raise BackupError("destination path must be an absolute directory (got %r)" % (path,))
        self.root = os.path.join(path, set_name)
        self.location = self.root

    def _dir(self, backup_id):
        return os.path.join(self.root, backup_id)

    def _partial_dir(self, backup_id):
        return os.path.join(self.root, ".%s.partial" % backup_id)

    def prepare(self, backup_id):
        if os.path.exists(self._dir(backup_id)):
            raise BackupError("backup %s already exists in %s; wait a second and run again" % (backup_id, self.root))
        try:
            os.makedirs(self._partial_dir(backup_id), mode=0o700)
        except OSError as exc:
            raise BackupError(describe_os_error("create the backup directory", self._partial_dir(backup_id),
                                                exc)) from None

    def open_part(self, backup_id, index):
        return LocalPart(os.path.join(self._partial_dir(backup_id), part_name(index)), part_name(index))

    def publish(self, backup_id, manifest_bytes):
        """Manifest into the hidden directory, the directory renamed into view, then the latest pointer."""
        partial = self._partial_dir(backup_id)
        try:
            write_atomically(os.path.join(partial, MANIFEST_NAME), manifest_bytes, mode=0o600)
            fsync_directory(partial)
            os.rename(partial, self._dir(backup_id))
            fsync_directory(self.root)
            write_atomically(os.path.join(self.root, LATEST_NAME), backup_id + "\n", mode=0o644)
        except OSError as exc:
            raise BackupError(describe_os_error("publish the backup in", self.root, exc)) from None

    def discard(self, backup_id):
        shutil.rmtree(self._partial_dir(backup_id), ignore_errors=True)

    def backups(self):
        """Every backup of the set, newest first: ``{"id", "complete"}``."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BackupError(describe_os_error("list the backups in", self.root, exc)) from None
        found = []
        for name in names:
            if is_backup_id(name) and os.path.isdir(self._dir(name)):
                found.append({"id": name, "complete": os.path.isfile(os.path.join(self._dir(name), MANIFEST_NAME))})
            elif name.startswith(".") and name.endswith(".partial") and is_backup_id(name[1:-len(".partial")]):
                found.append({"id": name[1:-len(".partial")], "complete": False})
        return newest_first(found)

    def latest(self):
        try:
            with open(os.path.join(self.root, LATEST_NAME)) as handle:
                text = handle.read().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupError(describe_os_error("read", os.path.join(self.root, LATEST_NAME), exc)) from None
        return text or None

    def read_manifest(self, backup_id):
        path = os.path.join(self._dir(backup_id), MANIFEST_NAME)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise BackupError("backup %s is not in %s (no %s); list the backups with ai_backup action=list"
                              % (backup_id, self.root, MANIFEST_NAME)) from None
        except OSError as exc:
            raise BackupError(describe_os_error("read", path, exc)) from None

    def fetch_parts(self, backup_id, parts, work_dir):
        """The local paths of the parts, each checked against its size and sha256 first."""
        paths = []
        for part in parts:
            path = os.path.join(self._dir(backup_id), part["name"])
            if not os.path.isfile(path):
                raise BackupError("backup %s is damaged: %s is missing from %s. Nothing was restored; restore "
                                  "another backup (backup=<id>)" % (backup_id, part["name"], self._dir(backup_id)))
            verify_part_file(path, part, backup_id)
            paths.append(path)
        return paths

    def release_parts(self, paths):
        """Local parts are read in place: nothing to clean up."""

    def delete(self, backup_id, complete=True):
        """Remove a backup: the manifest goes first, so a deletion cut short leaves an incomplete backup."""
        target = self._dir(backup_id)
        if not complete and not os.path.isdir(target):
            target = self._partial_dir(backup_id)
        try:
            remove_quietly(os.path.join(target, MANIFEST_NAME))
            shutil.rmtree(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackupError(describe_os_error("delete backup", target, exc)) from None


# -- S3 ------------------------------------------------------------------------------------------------------


def s3_error(action, exc, endpoint):
    """A sentence for a failed S3 call, with what to check."""
    where = endpoint or "AWS S3"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return "cannot %s: the S3 endpoint %s cannot be reached (%s). Check endpoint_url, the network and the " \
               "firewall" % (action, where, exc)
    if isinstance(exc, ConnectionClosedError):
        return "cannot %s: the connection to the S3 endpoint %s broke before it answered (%s). Check that the " \
               "service runs and the network to it is stable" % (action, where, exc)
    if isinstance(exc, ReadTimeoutError):
        return "cannot %s: the S3 endpoint %s stopped answering (%s)" % (action, where, exc)
    if isinstance(exc, NoCredentialsError):
        return "cannot %s: no S3 credentials; set access_key and secret_key" % action
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        hint = {
            "NoSuchBucket": "the bucket does not exist: create it first",
            "AccessDenied": "the credentials may not do this: check the bucket policy and the access key",
            "InvalidAccessKeyId": "the access key is unknown to the server",
            "SignatureDoesNotMatch": "the secret key does not match the access key",
            "InvalidRequest": "the server refused the request: for MinIO and Ceph keep "
                              "request_checksum_calculation=when_required",
        }.get(code, "")
        return "cannot %s: S3 answered %s (%s)%s" % (action, code or "an error", error.get("Message") or exc,
                                                     ". " + hint[0].upper() + hint[1:] if hint else "")
    return "cannot %s: %s (%s)" % (action, exc, type(exc).__name__)


class S3Part:
    """A part spooled to a local file, uploaded (multipart when big) and verified when it is committed."""

    def __init__(self, store, backup_id, name, spool_path):
        self.store = store
        self.backup_id = backup_id
        self.file = FilePart(spool_path, name)

    def write(self, data):
        self.file.write(data)

    def commit(self):
        entry = self.file.finish()
        try:
            self.store.upload_part(self.backup_id, entry, self.file.path)
        finally:
            remove_quietly(self.file.path)
        return entry

    def abort(self):
        self.file.discard()


class S3Store:
    """Backups of one set in a bucket, under ``prefix``."""

    kind = "s3"

    def __init__(self, options, set_name, spool_dir):
        if not HAS_BOTO3:
            raise BackupError("the S3 destination needs the Python library boto3 on the host that runs the module "
                              "(Debian: python3-boto3)")
        self.options = options
        self.bucket = options["bucket"]
        if not self.bucket:
            raise BackupError("s3.bucket must name a bucket")
        self.endpoint = options.get("endpoint_url")
        prefix = (options.get("prefix") or "").strip("/")
        self.base = "/".join(part for part in (prefix, set_name) if part)
        self.location = "s3://%s/%s" % (self.bucket, self.base)
        self.spool_dir = spool_dir
        part_mb = options.get("part_size_mb") or 64
        if part_mb < S3_MIN_PART_MB:
            raise BackupError("s3.part_size_mb must be at least %d (S3's smallest multipart part), got %d"
                              % (S3_MIN_PART_MB, part_mb))
        concurrency = options.get("max_concurrency") or 1
        self.transfer = TransferConfig(multipart_threshold=part_mb * MEBIBYTE, multipart_chunksize=part_mb * MEBIBYTE,
                                       max_concurrency=concurrency, use_threads=concurrency > 1)
        self.client = self._client()

    def _client(self):
        options = self.options
        settings = dict(
            s3={"addressing_style": options.get("addressing_style") or "auto"},
            retries={"max_attempts": (options.get("retries") if options.get("retries") is not None else 2) + 1,
                     "mode": "standard"},
            connect_timeout=options.get("connect_timeout") or 10,
            read_timeout=options.get("read_timeout") or 60,
        )
        # botocore before 1.36 (Debian 12 ships 1.29) knows neither setting and never sends the checksums they govern.
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            settings.update(
                request_checksum_calculation=options.get("request_checksum_calculation") or "when_required",
                response_checksum_validation=options.get("response_checksum_validation") or "when_required")
        config = Config(**settings)
        verify = options.get("ca_path") or (options.get("validate_certs") is not False)
        try:
            return boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=options.get("region"),
                aws_access_key_id=options.get("access_key"), aws_secret_access_key=options.get("secret_key"),
                aws_session_token=options.get("session_token"), config=config, verify=verify)
        except (BotoCoreError, ValueError) as exc:
            raise BackupError("cannot set up the S3 client: %s" % exc) from None

    def key(self, *names):
        return "/".join(part for part in (self.base, *names) if part)

    def _call(self, action, function, **kwargs):
        try:
            return function(**kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise BackupError(s3_error(action, exc, self.endpoint)) from None

    def _extra_args(self, sha256=None):
        extra = {}
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        if self.options.get("sse"):
            extra["ServerSideEncryption"] = self.options["sse"]
        if self.options.get("sse_kms_key_id"):
            extra["SSEKMSKeyId"] = self.options["sse_kms_key_id"]
        if self.options.get("storage_class"):
            extra["StorageClass"] = self.options["storage_class"]
        return extra

    def prepare(self, backup_id):
        self._call("reach the bucket %s" % self.bucket, self.client.head_bucket, Bucket=self.bucket)
        if self._exists(self.key(backup_id, MANIFEST_NAME)):
            raise BackupError("backup %s already exists in %s; wait a second and run again" % (backup_id,
                                                                                               self.location))

    def _exists(self, key):
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise BackupError(s3_error("check s3://%s/%s" % (self.bucket, key), exc, self.endpoint)) from None
        except BotoCoreError as exc:
            raise BackupError(s3_error("check s3://%s/%s" % (self.bucket, key), exc, self.endpoint)) from None
        return True

    def open_part(self, backup_id, index):
        spool = os.path.join(self.spool_dir, "%s.%s" % (backup_id, part_name(index)))
        return S3Part(self, backup_id, part_name(index), spool)

    def upload_part(self, backup_id, entry, path):
        key = self.key(backup_id, entry["name"])
        action = "upload %s of backup %s to s3://%s/%s" % (entry["name"], backup_id, self.bucket, key)
        self._call(action, self.client.upload_file, Filename=path, Bucket=self.bucket, Key=key,
                   ExtraArgs=self._extra_args(entry["sha256"]), Config=self.transfer)
        head = self._call("verify s3://%s/%s" % (self.bucket, key), self.client.head_object, Bucket=self.bucket,
                          Key=key)
        stored_sha = (head.get("Metadata") or {}).get("sha256")
        if head.get("ContentLength") != entry["size"] or stored_sha != entry["sha256"]:
            raise BackupError("s3://%s/%s holds %s bytes (sha256 %s) after uploading %d bytes (sha256 %s); the store "
                              "did not keep the part intact" % (self.bucket, key, head.get("ContentLength"), stored_sha,
                                                                entry["size"], entry["sha256"]))

    def _put(self, key, body, content_type):
        self._call("write s3://%s/%s" % (self.bucket, key), self.client.put_object, Bucket=self.bucket, Key=key,
                   Body=body, ContentType=content_type, **self._extra_args())

    def publish(self, backup_id, manifest_bytes):
        self._put(self.key(backup_id, MANIFEST_NAME), manifest_bytes, "application/json")
        self._put(self.key(LATEST_NAME), (backup_id + "\n").encode(), "text/plain")

    def _keys(self, prefix):
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents") or []:
                    yield item["Key"]
        except (BotoCoreError, ClientError) as exc:
            raise BackupError(s3_error("list s3://%s/%s" % (self.bucket, prefix), exc, self.endpoint)) from None

    def _delete_keys(self, keys):
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            answer = self._call("delete objects in s3://%s" % self.bucket, self.client.delete_objects,
                                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise BackupError("cannot delete s3://%s/%s: %s" % (self.bucket, first.get("Key"),
                                                                    first.get("Message") or first.get("Code")))

    def discard(self, backup_id):
        self._delete_keys(list(self._keys(self.key(backup_id) + "/")))

    def backups(self):
        found = {}
        prefix = self.key() + "/"
        for key in self._keys(prefix):
            backup_id, _separator, rest = key[len(prefix):].partition("/")
            if is_backup_id(backup_id) and rest:
                found[backup_id] = found.get(backup_id, False) or rest == MANIFEST_NAME
        return newest_first({"id": backup_id, "complete": complete} for backup_id, complete in found.items())

    def _get(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise BackupError(s3_error("read s3://%s/%s" % (self.bucket, key), exc, self.endpoint)) from None
        except BotoCoreError as exc:
            raise BackupError(s3_error("read s3://%s/%s" % (self.bucket, key), exc, self.endpoint)) from None

    def latest(self):
        data = self._get(self.key(LATEST_NAME))
        if data is None:
            return None
        return data.decode("utf-8", "replace").strip() or None

    def read_manifest(self, backup_id):
        data = self._get(self.key(backup_id, MANIFEST_NAME))
        if data is None:
            raise BackupError("backup %s is not in %s (no %s); list the backups with ai_backup action=list"
                              % (backup_id, self.location, MANIFEST_NAME))
        return data

    def fetch_parts(self, backup_id, parts, work_dir):
        """Download every part into ``work_dir``, checking each one's size and sha256 on the way."""
        paths = []
        try:
            for part in parts:
                path = os.path.join(work_dir, "%s.%s" % (backup_id, part["name"]))
                paths.append(path)
                self._download(backup_id, part, path)
        except BaseException:
            self.release_parts(paths)
            raise
        return paths

    def _download(self, backup_id, part, path):
        key = self.key(backup_id, part["name"])
        answer = self._call("download s3://%s/%s" % (self.bucket, key), self.client.get_object, Bucket=self.bucket,
                            Key=key)
        reader = HashingReader(answer["Body"])
        try:
            with open(path, "wb") as handle:
                shutil.copyfileobj(reader, handle, CHUNK_SIZE)
        except OSError as exc:
            raise BackupError(describe_os_error("write the downloaded part", path, exc)) from None
        except (BotoCoreError, ClientError) as exc:
            raise BackupError(s3_error("download s3://%s/%s" % (self.bucket, key), exc, self.endpoint)) from None
        if (reader.hexdigest(), reader.size) != (part["sha256"], part["size"]):
            raise damaged_part_error(backup_id, part, reader.hexdigest(), reader.size)

    def release_parts(self, paths):
        for path in paths:
            remove_quietly(path)

    def delete(self, backup_id, complete=True):
        manifest = self.key(backup_id, MANIFEST_NAME)
        if complete:
            self._delete_keys([manifest])
        self._delete_keys([key for key in self._keys(self.key(backup_id) + "/") if key != manifest])


def open_store(destination, set_name, spool_dir):
    """The store a module's ``destination`` option names: ``path`` (local) or ``s3``."""
    if destination.get("s3"):
        return S3Store(destination["s3"], set_name, spool_dir)
    if destination.get("path"):
        return LocalStore(destination["path"], set_name)
    raise BackupError("destination needs either path (a local directory) or s3 (a bucket)")
