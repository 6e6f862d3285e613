# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One restore: find the backup, verify all of it, plan, stage, then commit each source.

Order matters: the manifest and every part's sha256 are checked, and the encryption key is checked against
the manifest, before anything outside the scratch directory is written. Staged files are checked against
their own sha256 as they are written. Only then does anything in place change.
"""

from __future__ import annotations

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.archive import ArchiveReader
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    BackupError,
    check_name,
    is_backup_id,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.crypto import key_for_backup, verify_manifest
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.manifest import (
    load_manifest,
    manifest_summary,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.run import Scratch
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.stores import open_store
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.targets import TARGET_CLASSES, RestoreContext


class RestoreJob:
    """The restore module's options. ``targets`` maps a source type to its options (paths, databases, urls)."""

    def __init__(self, *, name, destination, backup="latest", sources=None, encryption_key=None, work_dir=None,
                 targets=None, run_command=None):
        self.name = check_name(name, "backup name")
        self.destination = destination or {}
        self.backup = backup or "latest"
        self.sources = list(sources or [])
        self.encryption_key = encryption_key
        self.work_dir = work_dir
        self.targets = targets or {}
        self.run_command = run_command


def resolve_backup_id(store, wanted):
    if wanted != "latest":
        if not is_backup_id(wanted):
            raise BackupError("backup must be latest or a backup id such as 20261127T021500Z-node1 (got %r)" % wanted)
        return wanted
    latest = store.latest()
    if latest is None:
        complete = [item["id"] for item in store.backups() if item["complete"]]
        if not complete:
            raise BackupError("there is no backup in %s to restore" % store.location)
        return complete[0]
    return latest


def select_sources(manifest, names):
    available = [source["name"] for source in manifest["sources"]]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise BackupError("backup %s has no source named %s; it has %s"
                          % (manifest["id"], ", ".join(unknown), ", ".join(available)))
    return [source for source in manifest["sources"] if not names or source["name"] in names]


def check_directory_paths(manifest, job):
    directories = [source["name"] for source in manifest["sources"] if source["type"] == "directory"]
    unknown = sorted(set(job.targets.get("by_name") or {}) - set(directories))
    if unknown:
        raise BackupError("directory_paths names %s, but backup %s has no directory source of that name (it has: %s)"
                          % (", ".join(unknown), manifest["id"], ", ".join(directories) or "none"))


def target_options(job, source):
    """A source's target options: those given for its name win over those given for its type."""
    by_type = job.targets.get(source["type"]) or {}
    by_name = (job.targets.get("by_name") or {}).get(source["name"]) or {}
    return dict(by_type, **by_name)


def run_restore(job, check_mode=False):
    warnings = []
    with Scratch(job.work_dir) as scratch:
        store = open_store(job.destination, job.name, scratch)
        backup_id = resolve_backup_id(store, job.backup)
        manifest = load_manifest(store.read_manifest(backup_id), backup_id)
        selected = select_sources(manifest, job.sources)
        check_directory_paths(manifest, job)
        key = key_for_backup(job.encryption_key, manifest.get("encryption"), backup_id)
        if key is not None:
            verify_manifest(manifest, key)
        paths = store.fetch_parts(backup_id, manifest["parts"], scratch)
        try:
            context = RestoreContext(backup_id, scratch, job.run_command, warnings)
            targets = [TARGET_CLASSES[source["type"]](source, target_options(job, source), context)
                       for source in selected]
            changes = [change for target in targets for change in target.plan()]
            result = {"changed": bool(changes), "backup_id": backup_id, "location": store.location,
                      "backup": manifest_summary(manifest), "verified_parts": len(paths),
                      "sources": [target.name for target in targets], "changes": changes, "restored": [],
                      "warnings": warnings}
            if check_mode or not changes:
                return result
            pending = [target for target in targets if target.changes]
            result["restored"] = apply_targets(pending, paths, manifest, key)
            return result
        finally:
            store.release_parts(paths)


def apply_targets(targets, paths, manifest, key):
    """Stage every changed file from the archive, then commit target by target; the names committed."""
    committed = []
    try:
        stage_from_archive(targets, paths, manifest, key)
        for target in targets:
            target.commit()
            committed.append(target.name)
    except BackupError as exc:
        for target in targets:
            target.cleanup()
        if committed:
            raise BackupError("%s. Sources already restored: %s; not restored: %s"
                              % (exc, ", ".join(committed), ", ".join(target.name for target in targets
                                                                      if target.name not in committed))) from None
        raise
    except BaseException:
        for target in targets:
            target.cleanup()
        raise
    return committed


def stage_from_archive(targets, paths, manifest, key):
    backup_id = manifest["id"]
    wanted = {}
    for target in targets:
        for entry in target.entries():
            if entry["type"] == "file" and target.wants(entry):
                wanted[entry["member"]] = (target, entry)
    listed = set(entry["member"] for source in manifest["sources"] for entry in source.get("files") or [])
    with ArchiveReader(paths, backup_id, manifest["compression"], key) as archive:
        for member, fileobj in archive.members():
            if member.name not in listed:
                raise BackupError("backup %s is damaged: its archive holds %s, which its manifest does not list. "
                                  "Nothing was changed" % (backup_id, member.name))
            if member.name in wanted and fileobj is not None:
                target, entry = wanted.pop(member.name)
                target.stage(entry, fileobj)
    if wanted:
        raise BackupError("backup %s is damaged: its archive lacks %s. Nothing was changed"
                          % (backup_id, ", ".join(sorted(wanted)[:5])))
