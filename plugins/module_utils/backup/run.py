# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One backup run: sources -> archive parts in the store -> manifest -> latest pointer -> retention -> metrics.

Nothing becomes visible before the manifest is written, and the manifest is written only after every part is
stored and verified; a run that fails removes what it stored and leaves the latest pointer alone.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.archive import ArchiveWriter
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    BackupError,
    check_name,
    describe_os_error,
    iso_time,
    new_backup_id,
    utc_now,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.crypto import new_encryption, sign_manifest
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.manifest import (
    build_manifest,
    dump_manifest,
    source_summary,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.metrics import record_run
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.retention import (
    apply_retention,
    check_policy,
    plan_retention,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.sources import SourceContext, make_sources
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.stores import open_store
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError, HttpClient
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import OllamaClient

MEBIBYTE = 1024 * 1024


class BackupJob:
    """Settings of a backup set, as the module's options give them."""

    def __init__(self, *, name, sources, destination, split_size_mb=1024, compression="none", encryption_key=None,
                 retention=None, metrics_dir=None, work_dir=None, engine_url=None, host=None,
                 collection_version=None, run_command=None):
        self.name = check_name(name, "backup name")
        self.source_specs = sources or []
        self.destination = destination or {}
        if not isinstance(split_size_mb, int) or split_size_mb < 1:
            raise BackupError("split_size_mb must be at least 1 (got %r)" % (split_size_mb,))
        self.split_size = split_size_mb * MEBIBYTE
        self.compression = compression
        self.encryption_key = encryption_key
        check_policy(retention)
        self.retention = dict(retention or {})
        self.metrics_dir = metrics_dir
        self.work_dir = work_dir
        self.engine_url = engine_url
        self.host = host or socket.gethostname()
        self.collection_version = collection_version
        self.run_command = run_command


class Scratch:
    """A private scratch directory (dumps, snapshots, S3 spool files), removed when the run ends."""

    def __init__(self, parent):
        self.parent = parent
        self.path = None

    def __enter__(self):
        try:
            self.path = tempfile.mkdtemp(prefix="namtech-backup-", dir=self.parent)
        except OSError as exc:
            raise BackupError(describe_os_error("create a scratch directory in", self.parent or tempfile.gettempdir(),
                                                exc) + "; set work_dir") from None
        return self.path

    def __exit__(self, *exc_info):
        shutil.rmtree(self.path, ignore_errors=True)


def engine_record(url, warnings):
    """The Ollama server's version and the digest of every model it has, or why they could not be read."""
    if not url:
        return None
    try:
        with HttpClient(url, retries=0) as http:
            client = OllamaClient(http)
            return {"url": url, "version": client.version(), "models": client.digests()}
    except ApiError as exc:
        warnings.append("could not record the engine's version and models: %s" % exc)
        return {"url": url, "error": str(exc)}


@contextlib.contextmanager
def sources_and_store(job, warnings):
    """The job's sources and its store, in a scratch directory that is removed when the block ends."""
    with Scratch(job.work_dir) as scratch:
        sources = make_sources(job.source_specs, SourceContext(job.run_command, scratch, warnings))
        yield sources, open_store(job.destination, job.name, scratch)


def plan_backup(job):
    """What a check-mode run reports: the sources' contents, the store, and what retention would delete now."""
    warnings = []
    with sources_and_store(job, warnings) as (sources, store):
        plans = [source.plan() for source in sources]
        retention = plan_retention(store.backups(), job.retention, latest=store.latest())
    return {"changed": True, "backup_id": new_backup_id(utc_now(), job.host), "location": store.location,
            "sources": plans, "retention": retention, "warnings": warnings}


def run_backup(job, clock=time.time):
    """Make one backup; the module's result. Metrics are written whatever happens, when asked for."""
    started = clock()
    try:
        result = _make_backup(job)
    except BackupError as exc:
        if job.metrics_dir:
            try:
                record_run(job.metrics_dir, job.name, finished_at=clock(), success=False)
            except BackupError as metrics_error:
                raise BackupError("%s; also %s" % (exc, metrics_error)) from None
        raise
    duration = clock() - started
    result["duration"] = round(duration, 3)
    if job.metrics_dir:
        try:
            result["metrics_file"] = record_run(job.metrics_dir, job.name, finished_at=clock(), success=True,
                                                duration=duration, size=result["size"])
        except BackupError as exc:
            raise BackupError("backup %s was stored, but %s" % (result["backup_id"], exc)) from None
    problems = result.pop("problems")
    if problems:
        raise BackupError("backup %s was stored, but: %s" % (result["backup_id"], "; ".join(problems)))
    return result


def _make_backup(job):
    warnings = []
    with sources_and_store(job, warnings) as (sources, store):
        started_at = utc_now()
        backup_id = new_backup_id(started_at, job.host)
        encryption, key = new_encryption(job.encryption_key) if job.encryption_key else (None, None)
        try:
            store.prepare(backup_id)
        except BackupError as exc:
            raise BackupError(str(exc) + _not_published(backup_id)) from None
        try:
            entries, parts, problems, archive_warnings = _write_archive(job, store, backup_id, sources, key)
            warnings.extend(archive_warnings)
            manifest = build_manifest(
                backup_id=backup_id, set_name=job.name, host=job.host, started_at=iso_time(started_at),
                finished_at=iso_time(utc_now()), collection_version=job.collection_version,
                compression=job.compression, encryption=encryption, parts=parts, sources=entries,
                engine=engine_record(job.engine_url, warnings), warnings=warnings)
            if key is not None:
                sign_manifest(manifest, key)
            store.publish(backup_id, dump_manifest(manifest))
        except BackupError as exc:
            raise BackupError(str(exc) + _discard(store, backup_id)) from None
        except BaseException:
            _discard(store, backup_id)
            raise
        retention = _retention(job, store, warnings)
    return {"changed": True, "backup_id": backup_id, "location": store.location, "size": manifest["size"],
            "parts": parts, "sources": [source_summary(entry) for entry in entries], "encrypted": key is not None,
            "started_at": manifest["started_at"], "finished_at": manifest["finished_at"], "retention": retention,
            "warnings": warnings, "problems": problems}


def _write_archive(job, store, backup_id, sources, key):
    archive = ArchiveWriter(lambda index: store.open_part(backup_id, index), job.split_size, job.compression, key)
    entries, problems = [], []
    try:
        for source in sources:
            try:
                source.quiesce()
                entries.append(source.write(archive))
            finally:
                problems.extend(source.resume())
        parts = archive.close()
    except BackupError as exc:
        archive.abort()
        also = "; also: " + "; ".join(problems) if problems else ""
        raise BackupError(str(exc) + also) from None
    except BaseException:
        archive.abort()
        raise
    return entries, parts, problems, archive.warnings


def _discard(store, backup_id):
    """Remove what a failed run stored; a note for the error message when that fails too."""
    try:
        store.discard(backup_id)
    except BackupError as exc:
        return ". Its parts could not be removed either (%s); they have no manifest, so restore ignores them and " \
               "retention removes them later" % exc
    return _not_published(backup_id)


def _not_published(backup_id):
    return ". Backup %s was not published (no manifest, latest unchanged)" % backup_id


def _retention(job, store, warnings):
    if not job.retention:
        return None
    try:
        return apply_retention(store, job.retention, dry_run=bool(job.retention.get("dry_run")))
    except BackupError as exc:
        warnings.append("the backup is stored, but retention failed: %s" % exc)
        return None


def list_backups(job):
    with Scratch(job.work_dir) as scratch:
        store = open_store(job.destination, job.name, scratch)
        return {"changed": False, "location": store.location, "backups": store.backups(), "latest": store.latest()}


def prune(job, check_mode=False):
    with Scratch(job.work_dir) as scratch:
        store = open_store(job.destination, job.name, scratch)
        plan = apply_retention(store, job.retention, dry_run=check_mode or bool(job.retention.get("dry_run")))
    return {"changed": bool(plan["delete"]) and not job.retention.get("dry_run"), "location": store.location,
            "retention": plan}
