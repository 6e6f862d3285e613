# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a restore puts each source back, and how: plan, stage, commit.

``plan()`` compares the backup with what is in place and lists the changes (nothing is touched, so it is the
dry run). ``stage()`` receives the verified content of each file that must change and writes it beside its
destination (or to the scratch directory). ``commit()`` moves staged content into place: a directory is swapped
whole (rename), a file is replaced atomically, a database is restored in one transaction. ``cleanup()`` removes
whatever was staged when the restore stops early, so a failure before the commit leaves everything as it was.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import stat

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    CHUNK_SIZE,
    BackupError,
    HashingWriter,
    describe_os_error,
    remove_quietly,
    sha256_of_file,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.ollama_store import DEFAULT_MODELS_DIR
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.postgres import Postgres
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.qdrant import QdrantClient, qdrant_http
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.sources import check_database_name
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError

EXAMPLES_PER_KIND = 20


class RestoreContext:
    def __init__(self, backup_id, scratch, run_command, warnings):
        self.backup_id = backup_id
        self.scratch = scratch
        self.run_command = run_command
        self.warnings = warnings
        self.is_root = os.geteuid() == 0


# -- files and their attributes ------------------------------------------------------------------------------


def wanted_owner(entry):
    """uid and gid for an entry: by user and group name when this host knows them, else the recorded numbers."""
    try:
        uid = pwd.getpwnam(entry["user"]).pw_uid if entry.get("user") else entry["uid"]
    except KeyError:
        uid = entry["uid"]
    try:
        gid = grp.getgrnam(entry["group"]).gr_gid if entry.get("group") else entry["gid"]
    except KeyError:
        gid = entry["gid"]
    return uid, gid


def apply_attributes(path, entry, is_root):
    """Owner (as root), mode and mtime of an entry, on a path that already has the right content."""
    if is_root:
        os.lchown(path, *wanted_owner(entry))
    if entry["type"] != "symlink":
        os.chmod(path, int(entry["mode"], 8))
        os.utime(path, (entry["mtime"], entry["mtime"]))


def differences(path, entry, is_root):
    """What differs between ``path`` and an entry: [] when it matches, ["missing"] when there is nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ["missing"]
    except OSError as exc:  # a file where a directory should be, a name too long...
        raise BackupError(describe_os_error("inspect", path, exc) + ". Nothing was changed") from None
    kinds = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}
    if not kinds[entry["type"]](st.st_mode):
        return ["type"]
    found = []
    if entry["type"] == "file" and (st.st_size != entry["size"] or sha256_of_file(path)[0] != entry["sha256"]):
        found.append("content")
    if entry["type"] == "symlink" and os.readlink(path) != entry["target"]:
        found.append("target")
    if entry["type"] != "symlink" and stat.S_IMODE(st.st_mode) != int(entry["mode"], 8):
        found.append("mode")
    if is_root and (st.st_uid, st.st_gid) != wanted_owner(entry):
        found.append("owner")
    return found


def write_member(fileobj, path, entry, backup_id):
    """Copy a member's content to a new file at ``path``, checking its size and sha256 against the manifest."""
    try:
        with open(path, "xb") as handle:
            written = HashingWriter(handle)
            shutil.copyfileobj(fileobj, written, CHUNK_SIZE)
    except OSError as exc:
        raise BackupError(describe_os_error("write", path, exc) + ". Nothing was changed yet") from None
    if (written.hexdigest(), written.size) != (entry["sha256"], entry["size"]):
        raise BackupError("backup %s is damaged: %s has sha256 %s and %d bytes, its manifest says %s and %d bytes. "
                          "Nothing was changed" % (backup_id, entry["member"], written.hexdigest(), written.size,
                                                   entry["sha256"], entry["size"]))


def place_symlink(path, target):
    """Create or replace a symlink atomically."""
    temporary = "%s.restore-tmp" % path
    remove_quietly(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, path)


def make_parents(path, mode=0o755, owner_of=None):
    """Create the missing parent directories of ``path``; with ``owner_of``, owned like that directory."""
    parent = os.path.dirname(path)
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        os.mkdir(directory, mode)
        if owner_of is not None:
            st = os.stat(owner_of)
            os.chown(directory, st.st_uid, st.st_gid)


class Target:
    """The shared part of every kind of target; subclasses fill in plan, wants, stage and commit."""

    def __init__(self, source, options, context):
        self.source = source
        self.name = source["name"]
        self.options = options or {}
        self.context = context
        self.changes = []

    def entries(self):
        return self.source.get("files") or []

    def wants(self, entry):
        return False

    def stage(self, entry, fileobj):
        raise NotImplementedError

    def commit(self):
        raise NotImplementedError

    def cleanup(self):
        """Remove whatever was staged."""

    def fail_io(self, action, path, exc):
        raise BackupError(describe_os_error(action, path, exc)) from None


# -- directory ----------------------------------------------------------------------------------------------


def current_tree(root):
    """``{relative path: absolute path}`` of everything under ``root`` (``.`` for root itself)."""
    found = {".": root}
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = path
    return found


class DirectoryTarget(Target):
    """The whole directory is replaced by the backup's copy: staged as a sibling, then swapped by rename."""

    def __init__(self, source, options, context):
        super().__init__(source, options, context)
        self.path = os.path.normpath(self.options.get("path") or source["path"])
        parent, base = os.path.split(self.path)
        self.staging = os.path.join(parent, ".%s.restore-%s" % (base, context.backup_id))
        self.old = os.path.join(parent, ".%s.pre-restore-%s" % (base, context.backup_id))
        self.staged = False

    def plan(self):
        entries = self.entries()
        if not os.path.lexists(self.path):
            self.changes = [{"source": self.name, "action": "create", "path": self.path,
                             "files": sum(1 for entry in entries if entry["type"] == "file")}]
            return self.changes
        if not os.path.isdir(self.path) or os.path.islink(self.path):
            raise BackupError("%s is not a directory; move it away before restoring source %s there"
                              % (self.path, self.name))
        on_disk = current_tree(self.path)
        added, changed = [], []
        for entry in entries:
            found = differences(os.path.join(self.path, entry["path"]), entry, self.context.is_root)
            if found == ["missing"]:
                added.append(entry["path"])
            elif found:
                changed.append(entry["path"])
        listed = set(entry["path"] for entry in entries)
        removed = sorted(relative for relative in on_disk if relative not in listed)
        if added or changed or removed:
            self.changes = [{"source": self.name, "action": "replace", "path": self.path,
                             "added": added[:EXAMPLES_PER_KIND], "changed": changed[:EXAMPLES_PER_KIND],
                             "removed": removed[:EXAMPLES_PER_KIND],
                             "counts": {"added": len(added), "changed": len(changed), "removed": len(removed)}}]
        return self.changes

    def wants(self, entry):
        return bool(self.changes)

    def _begin(self):
        if self.staged:
            return
        try:
            shutil.rmtree(self.staging, ignore_errors=True)
            make_parents(self.staging)
            os.mkdir(self.staging, 0o700)
            for entry in self.entries():
                if entry["type"] == "dir" and entry["path"] != ".":
                    os.makedirs(os.path.join(self.staging, entry["path"]), 0o700, exist_ok=True)
                elif entry["type"] == "symlink":
                    os.symlink(entry["target"], os.path.join(self.staging, entry["path"]))
        except OSError as exc:
            self.fail_io("prepare the restore of %s in" % self.path, self.staging, exc)
        self.staged = True

    def stage(self, entry, fileobj):
        self._begin()
        write_member(fileobj, os.path.join(self.staging, entry["path"]), entry, self.context.backup_id)

    def commit(self):
        self._begin()
        try:
            # Directories last and deepest first: a read-only directory must not block writing its children.
            ordered = sorted(self.entries(), key=lambda entry: (entry["type"] == "dir", -entry["path"].count("/")))
            for entry in ordered:
                apply_attributes(os.path.join(self.staging, entry["path"]), entry, self.context.is_root)
        except OSError as exc:
            self.fail_io("set owners and modes in", self.staging, exc)
        self._swap()

    def _swap(self):
        had_old = os.path.lexists(self.path)
        try:
            shutil.rmtree(self.old, ignore_errors=True)
            if had_old:
                os.rename(self.path, self.old)
            try:
                os.rename(self.staging, self.path)
            except OSError:
                if had_old:
                    os.rename(self.old, self.path)
                raise
        except OSError as exc:
            self.fail_io("swap the restored copy into place at", self.path, exc)
        self.staged = False
        shutil.rmtree(self.old, ignore_errors=True)

    def cleanup(self):
        shutil.rmtree(self.staging, ignore_errors=True)


# -- config ----------------------------------------------------------------------------------------------------


class ConfigTarget(Target):
    """Each file back at its path (under ``config_root``), replaced atomically; other files are left alone."""

    def __init__(self, source, options, context):
        super().__init__(source, options, context)
        self.root = self.options.get("root") or "/"
        self.staging = os.path.join(context.scratch, "stage-%s" % self.name)
        self.staged = {}
        self.changed_paths = set()

    def destination(self, entry):
        return os.path.join(self.root, entry["path"].lstrip("/"))

    def plan(self):
        for entry in self.entries():
            found = differences(self.destination(entry), entry, self.context.is_root)
            if found:
                self.changed_paths.add(entry["path"])
                self.changes.append({"source": self.name, "action": "create" if found == ["missing"] else "update",
                                     "path": self.destination(entry), "differs": found})
        return self.changes

    def wants(self, entry):
        return entry["path"] in self.changed_paths

    def stage(self, entry, fileobj):
        if not os.path.isdir(self.staging):
            os.mkdir(self.staging, 0o700)
        path = os.path.join(self.staging, "%06d" % len(self.staged))
        write_member(fileobj, path, entry, self.context.backup_id)
        self.staged[entry["path"]] = path

    def commit(self):
        for entry in self.entries():
            if entry["path"] in self.changed_paths:
                destination = self.destination(entry)
                try:
                    self._place(entry, destination)
                except OSError as exc:
                    self.fail_io("restore", destination, exc)

    def _place(self, entry, destination):
        make_parents(destination)
        if entry["type"] == "dir":
            if not os.path.isdir(destination) or os.path.islink(destination):
                remove_quietly(destination)
                os.mkdir(destination, 0o700)
        elif entry["type"] == "symlink":
            place_symlink(destination, entry["target"])
        else:
            temporary = "%s.restore-tmp" % destination
            remove_quietly(temporary)
            shutil.copyfile(self.staged[entry["path"]], temporary)
            apply_attributes(temporary, entry, self.context.is_root)
            if os.path.isdir(destination) and not os.path.islink(destination):
                remove_quietly(temporary)
                raise OSError(errno.EISDIR, "a directory is where the backup has a file", destination)
            os.replace(temporary, destination)
            return
        apply_attributes(destination, entry, self.context.is_root)

    def cleanup(self):
        shutil.rmtree(self.staging, ignore_errors=True)


# -- models ------------------------------------------------------------------------------------------------------


class ModelsTarget(Target):
    """Blobs that are missing (or damaged) and manifests that differ, staged inside the store, then renamed."""

    def __init__(self, source, options, context):
        super().__init__(source, options, context)
        self.models_dir = os.path.normpath(self.options.get("models_dir") or source.get("models_dir")
                                           or DEFAULT_MODELS_DIR)
        self.staging = os.path.join(self.models_dir, ".restore-%s" % context.backup_id)
        self.staged = {}
        self.changed_paths = set()

    def plan(self):
        for entry in self.entries():
            found = differences(os.path.join(self.models_dir, entry["path"]), entry, self.context.is_root)
            if found:
                self.changed_paths.add(entry["path"])
                kind = "blob" if entry["path"].startswith("blobs/") else "manifest"
                self.changes.append({"source": self.name, "action": "add %s" % kind if found == ["missing"]
                                     else "replace %s" % kind, "path": os.path.join(self.models_dir, entry["path"]),
                                     "differs": found, "size": entry.get("size")})
        return self.changes

    def wants(self, entry):
        return entry["path"] in self.changed_paths

    def stage(self, entry, fileobj):
        try:
            if not os.path.isdir(self.staging):
                make_parents(self.staging)
                os.mkdir(self.staging, 0o700)
        except OSError as exc:
            self.fail_io("create the staging directory", self.staging, exc)
        path = os.path.join(self.staging, "%06d" % len(self.staged))
        write_member(fileobj, path, entry, self.context.backup_id)
        self.staged[entry["path"]] = path

    def commit(self):
        # Blobs first: a manifest must never name a blob that is not there yet.
        ordered = sorted(self.entries(), key=lambda entry: not entry["path"].startswith("blobs/"))
        for entry in ordered:
            if entry["path"] not in self.changed_paths:
                continue
            destination = os.path.join(self.models_dir, entry["path"])
            try:
                make_parents(destination, owner_of=self.models_dir)
                apply_attributes(self.staged[entry["path"]], entry, self.context.is_root)
                os.replace(self.staged[entry["path"]], destination)
            except OSError as exc:
                self.fail_io("restore", destination, exc)
        self.cleanup()

    def cleanup(self):
        shutil.rmtree(self.staging, ignore_errors=True)


# -- postgres -----------------------------------------------------------------------------------------------------


class PostgresTarget(Target):
    """Each database restored with ``pg_restore --single-transaction`` (all or nothing), created when missing."""

    def __init__(self, source, options, context):
        super().__init__(source, options, context)
        self.client = Postgres(context.run_command, host=self.options.get("host"), port=self.options.get("port"),
                               user=self.options.get("user"), password=self.options.get("password"),
                               bin_dir=self.options.get("bin_dir"))
        self.mapping = dict(self.options.get("databases") or {})
        self.staged = {}

    def target_name(self, database):
        return check_database_name(self.mapping.get(database, database))

    def plan(self):
        existing = self.client.databases()
        for database in self.source.get("databases") or []:
            target = self.target_name(database)
            self.changes.append({"source": self.name, "action": "restore database", "database": database,
                                 "target": target, "exists": target in existing})
        return self.changes

    def wants(self, entry):
        return True

    def stage(self, entry, fileobj):
        path = os.path.join(self.context.scratch, "%s.%s" % (self.name, os.path.basename(entry["path"])))
        write_member(fileobj, path, entry, self.context.backup_id)
        self.staged[entry["path"]] = path

    def commit(self):
        for change in self.changes:
            path = self.staged.get("%s.dump" % change["database"])
            if path is None:
                raise BackupError("backup %s has no dump of database %s"
                                  % (self.context.backup_id, change["database"]))
            if not change["exists"]:
                if self.options.get("create") is False:
                    raise BackupError("database %s does not exist and create=false; create it or allow create"
                                      % change["target"])
                self.client.create_database(change["target"])
            self.client.restore(change["target"], path, clean=self.options.get("clean", True) is not False,
                                no_owner=bool(self.options.get("no_owner")))


# -- qdrant ---------------------------------------------------------------------------------------------------------


class QdrantTarget(Target):
    """Collections recovered from their snapshot by upload (``priority``); full snapshots copied to a directory."""

    def __init__(self, source, options, context):
        super().__init__(source, options, context)
        self.url = self.options.get("url") or source.get("url")
        self.mapping = dict(self.options.get("collections") or {})
        self.staged = {}

    def http(self):
        try:
            return qdrant_http(self.url, api_key=self.options.get("api_key"),
                               timeout=self.options.get("timeout") or 300.0,
                               validate_certs=self.options.get("validate_certs", True) is not False,
                               ca_path=self.options.get("ca_path"))
        except ApiError as exc:
            raise BackupError("source %s: %s" % (self.name, exc)) from None

    def plan(self):
        snapshots = self.source.get("snapshots") or []
        existing = set()
        if any(snapshot["collection"] for snapshot in snapshots):
            with self.http() as http:
                try:
                    existing = set(QdrantClient(http).collections())
                except ApiError as exc:
                    raise BackupError("source %s: %s" % (self.name, exc)) from None
        for snapshot in snapshots:
            if snapshot["collection"]:
                target = self.mapping.get(snapshot["collection"], snapshot["collection"])
                self.changes.append({"source": self.name, "action": "recover collection", "collection": target,
                                     "snapshot": snapshot["snapshot"], "exists": target in existing,
                                     "priority": self.options.get("priority") or "snapshot"})
            else:
                directory = self.options.get("full_snapshot_dir")
                if not directory:
                    raise BackupError(
                        "source %s holds a full Qdrant snapshot, which Qdrant recovers only when it starts "
                        "(qdrant --storage-snapshot FILE); set qdrant.full_snapshot_dir to get the file" % self.name)
                self.changes.append({"source": self.name, "action": "copy full snapshot",
                                     "path": os.path.join(directory, snapshot["snapshot"])})
        return self.changes

    def wants(self, entry):
        return True

    def stage(self, entry, fileobj):
        path = os.path.join(self.context.scratch, "%s.%06d.snapshot" % (self.name, len(self.staged)))
        write_member(fileobj, path, entry, self.context.backup_id)
        self.staged[entry["path"]] = path

    def commit(self):
        snapshots = dict((snapshot["path"], snapshot) for snapshot in self.source.get("snapshots") or [])
        with self.http() as http:
            client = QdrantClient(http)
            for path, snapshot in snapshots.items():
                staged = self.staged[path]
                if snapshot["collection"]:
                    self._upload(client, snapshot, staged)
                else:
                    self._copy_full(snapshot, staged)

    def _upload(self, client, snapshot, staged):
        target = self.mapping.get(snapshot["collection"], snapshot["collection"])
        try:
            with open(staged, "rb") as handle:
                client.upload_snapshot(target, handle, snapshot["snapshot"],
                                       priority=self.options.get("priority") or "snapshot",
                                       checksum=snapshot["checksum"])
        except ApiError as exc:
            raise BackupError("source %s: recovering collection %s failed: %s" % (self.name, target, exc)) from None

    def _copy_full(self, snapshot, staged):
        destination = os.path.join(self.options["full_snapshot_dir"], snapshot["snapshot"])
        try:
            make_parents(destination)
            shutil.copyfile(staged, destination + ".restore-tmp")
            os.replace(destination + ".restore-tmp", destination)
        except OSError as exc:
            self.fail_io("copy the full snapshot to", destination, exc)


TARGET_CLASSES = {"directory": DirectoryTarget, "config": ConfigTarget, "models": ModelsTarget,
                  "postgres": PostgresTarget, "qdrant": QdrantTarget}
