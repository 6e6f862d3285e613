# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a backup reads: directories, config files, Ollama models, PostgreSQL databases and Qdrant snapshots.

Each source adds its files to the archive under ``<source name>/`` and returns its manifest entry, whose
``files`` list names every archive member with its size, sha256, mode and owner. A source may quiesce what it
reads first (``pre_command``, ``stop_services``) and always undoes that afterwards, also when the backup fails.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import (
    BackupError,
    HashingWriter,
    check_name,
    command_failure,
    describe_os_error,
    remove_quietly,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.ollama_store import (
    DEFAULT_MODELS_DIR,
    all_manifest_parts,
    blob_relpath,
    display_name,
    manifest_digests,
    manifest_parts,
    manifest_relpath,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.postgres import Postgres
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.qdrant import QdrantClient, qdrant_http
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError

SOURCE_OPTIONS = {
    "directory": ("path", "exclude"),
    "config": ("paths", "exclude", "ignore_missing"),
    "models": ("models_dir", "models"),
    "postgres": ("databases", "host", "port", "user", "password", "bin_dir"),
    "qdrant": ("url", "api_key", "collections", "validate_certs", "ca_path", "timeout"),
}
COMMON_OPTIONS = ("name", "type", "stop_services", "pre_command", "post_command")


class SourceContext:
    """What sources need from the run: a command runner, a scratch directory, a place for warnings."""

    def __init__(self, run_command, work_dir, warnings=None):
        self.run_command = run_command
        self.work_dir = work_dir
        self.warnings = [] if warnings is None else warnings

    def warn(self, message):
        self.warnings.append(message)


def check_database_name(name):
    if not isinstance(name, str) or not name or name.startswith("-") or "=" in name or "/" in name:
        raise BackupError("%r is not a database name this module accepts (no '=', '/' or leading '-')" % (name,))
    return name


class Source:
    """The shared part: naming, option checks, quiescing (commands and services) and the manifest entry."""

    type = None

    def __init__(self, spec, context):
        self.spec = spec
        self.context = context
        self.name = check_name(spec.get("name") or self.type, "source name")
        self.files = []
        self.stopped = []
        self.pre_ran = False
        self.check_options()

    def option(self, key, default=None):
        value = self.spec.get(key)
        return default if value is None else value

    def check_options(self):
        allowed = set(COMMON_OPTIONS) | set(SOURCE_OPTIONS[self.type])
        for key, value in self.spec.items():
            if value not in (None, [], False) and key not in allowed:
                raise BackupError("source %s (type %s) does not take the option %s; it takes %s"
                                  % (self.name, self.type, key, ", ".join(sorted(allowed - {"name", "type"}))))
        for key in ("pre_command", "post_command"):
            command = self.spec.get(key)
            if command is not None and (not isinstance(command, list) or not command):
                raise BackupError("source %s: %s must be a command as a list of arguments, for example "
                                  "['/usr/bin/sync']" % (self.name, key))

    def member(self, *parts):
        return "/".join((self.name, *parts))

    # -- quiescing ------------------------------------------------------------------------------------

    def quiesce(self):
        """Run ``pre_command``, then stop the listed services that are running."""
        if self.spec.get("pre_command"):
            self._run_checked(self.spec["pre_command"], "pre_command of source %s" % self.name)
            self.pre_ran = True
        for service in self.option("stop_services", []):
            rc, _out, _err = self.context.run_command(["systemctl", "is-active", "--quiet", service])
            if rc != 0:
                continue
            self._run_checked(["systemctl", "stop", service], "stopping %s for source %s" % (service, self.name))
            self.stopped.append(service)

    def resume(self):
        """Start what ``quiesce`` stopped, then run ``post_command``; the problems, as sentences."""
        problems = []
        for service in reversed(self.stopped):
            argv = ["systemctl", "start", service]
            rc, _out, err = self.context.run_command(argv)
            if rc != 0:
                problems.append(command_failure("starting %s again after the backup" % service, argv, rc, err)
                                + "; start it by hand")
        self.stopped = []
        if self.spec.get("post_command") and (self.pre_ran or not self.spec.get("pre_command")):
            argv = self.spec["post_command"]
            rc, _out, err = self.context.run_command(argv)
            if rc != 0:
                problems.append(command_failure("post_command of source %s" % self.name, argv, rc, err))
        self.pre_ran = False
        return problems

    def _run_checked(self, argv, what):
        rc, _out, err = self.context.run_command(argv)
        if rc != 0:
            raise BackupError(command_failure(what, argv, rc, err))

    # -- describing ------------------------------------------------------------------------------------

    def plan(self):
        """What a check-mode run reports for this source."""
        return {"name": self.name, "type": self.type}

    def manifest_entry(self, **extra):
        entry = {"name": self.name, "type": self.type, "files": self.files}
        entry.update(extra)
        return entry

    def add(self, archive, member, path, relative_path):
        entry = archive.add_path(member, path, relative_path)
        if entry is not None:
            self.files.append(entry)
        return entry


def walk_tree(root, exclude):
    """``(absolute path, path relative to root)`` of everything under ``root``, parents before children."""
    yield root, "."
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        kept = []
        for name in subdirs:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            if excluded(relative, exclude):
                continue
            if os.path.islink(path):
                yield path, relative
            else:
                kept.append(name)
                yield path, relative
        subdirs[:] = kept
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            if not excluded(relative, exclude):
                yield path, relative


def excluded(relative, patterns):
    return any(fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(os.path.basename(relative), pattern)
               for pattern in patterns)


class DirectorySource(Source):
    """A store kept as files (Chroma, LanceDB, FAISS indexes): the whole tree, with modes and owners."""

    type = "directory"

    def check_options(self):
        super().check_options()
        path = self.spec.get("path")
        if not path or not os.path.isabs(path):
            raise BackupError("source %s: path must be an absolute directory (got %r)" % (self.name, path))
        if not os.path.isdir(path):
            raise BackupError("source %s: %s is not a directory: check path" % (self.name, path))
        self.path = os.path.normpath(path)

    def plan(self):
        files = [path for path, _relative in walk_tree(self.path, self.option("exclude", []))
                 if os.path.isfile(path) and not os.path.islink(path)]
        return dict(super().plan(), path=self.path, files=len(files),
                    bytes=sum(os.path.getsize(path) for path in files))

    def write(self, archive):
        for path, relative in walk_tree(self.path, self.option("exclude", [])):
            member = self.member("data") if relative == "." else self.member("data", relative)
            self.add(archive, member, path, relative)
        return self.manifest_entry(path=self.path)


class ConfigSource(Source):
    """The files that define the service, by paths and globs, restored to the same absolute paths."""

    type = "config"

    def check_options(self):
        super().check_options()
        paths = self.option("paths", [])
        if not paths:
            raise BackupError("source %s: paths must list at least one file, directory or glob" % self.name)
        for path in paths:
            if not os.path.isabs(path):
                raise BackupError("source %s: %r is not an absolute path" % (self.name, path))

    def matched_paths(self):
        """Every path the patterns name, each once, in order; a literal path that is missing is an error."""
        seen, ordered = set(), []
        exclude = self.option("exclude", [])
        for pattern in self.option("paths", []):
            if glob.has_magic(pattern):
                # lexists: glob answers "missing/" for "missing/**" when the directory does not exist.
                matches = sorted(match for match in glob.glob(pattern, recursive=True) if os.path.lexists(match))
                if not matches:
                    self.context.warn("source %s: %s matches nothing" % (self.name, pattern))
            elif os.path.lexists(pattern):
                matches = [pattern]
            elif self.option("ignore_missing", False):
                self.context.warn("source %s: %s does not exist, skipped" % (self.name, pattern))
                matches = []
            else:
                raise BackupError("source %s: %s does not exist. Fix paths, or set ignore_missing=true for files "
                                  "that only some hosts have" % (self.name, pattern))
            for match in matches:
                top = os.path.normpath(match)
                for path in self._expand(top, exclude):
                    if path not in seen:
                        seen.add(path)
                        ordered.append(path)
        return ordered

    @staticmethod
    def _expand(top, exclude):
        if os.path.isdir(top) and not os.path.islink(top):
            for path, relative in walk_tree(top, exclude):
                yield top if relative == "." else path
        elif not excluded(top, exclude):
            yield top

    def plan(self):
        paths = self.matched_paths()
        files = [path for path in paths if os.path.isfile(path) and not os.path.islink(path)]
        return dict(super().plan(), files=len(files), bytes=sum(os.path.getsize(path) for path in files),
                    paths=paths)

    def write(self, archive):
        for path in self.matched_paths():
            self.add(archive, self.member("files") + path, path, path)
        return self.manifest_entry(paths=list(self.option("paths", [])))


class ModelsSource(Source):
    """Named Ollama models: their manifests, and every blob they use, each blob once."""

    type = "models"

    def check_options(self):
        super().check_options()
        self.models_dir = os.path.normpath(self.option("models_dir", DEFAULT_MODELS_DIR))
        if not os.path.isdir(os.path.join(self.models_dir, "manifests")):
            raise BackupError("source %s: %s has no manifests directory, so it is not an Ollama model store; set "
                              "models_dir to the server's OLLAMA_MODELS" % (self.name, self.models_dir))

    def selected(self):
        """``[(display name, manifest relpath, raw manifest, digests)]`` of the models to back up."""
        names = self.option("models", [])
        parts_list = [manifest_parts(name) for name in names] if names else all_manifest_parts(self.models_dir)
        selected = []
        for parts in parts_list:
            relpath = manifest_relpath(parts)
            path = os.path.join(self.models_dir, relpath)
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
            except FileNotFoundError:
                raise BackupError("source %s: model %s is not in %s (no %s). Check the name and tag with "
                                  "ollama list" % (self.name, display_name(parts), self.models_dir, relpath)) from None
            except OSError as exc:
                raise BackupError(describe_os_error("read", path, exc)) from None
            selected.append((display_name(parts), relpath, raw, manifest_digests(raw, path)))
        return selected

    def plan(self):
        selected = self.selected()
        blobs = set(digest for _name, _relpath, _raw, digests in selected for digest in digests)
        size = sum(os.path.getsize(os.path.join(self.models_dir, blob_relpath(digest))) for digest in blobs
                   if os.path.isfile(os.path.join(self.models_dir, blob_relpath(digest))))
        return dict(super().plan(), models=[name for name, _relpath, _raw, _digests in selected],
                    blobs=len(blobs), bytes=size)

    def write(self, archive):
        models, written = [], set()
        for name, relpath, raw, digests in self.selected():
            for digest in digests:
                if digest not in written:
                    self._add_blob(archive, digest, name)
                    written.add(digest)
            self.add(archive, self.member(relpath), os.path.join(self.models_dir, relpath), relpath)
            models.append({"name": name, "manifest": relpath, "digest": hashlib.sha256(raw).hexdigest(),
                           "blobs": digests})
        return self.manifest_entry(models_dir=self.models_dir, models=models)

    def _add_blob(self, archive, digest, model):
        relpath = blob_relpath(digest)
        path = os.path.join(self.models_dir, relpath)
        if not os.path.isfile(path):
            raise BackupError("source %s: blob %s of model %s is missing from %s; the store is damaged: pull the "
                              "model again" % (self.name, digest, model, self.models_dir))
        entry = self.add(archive, self.member(relpath), path, relpath)
        if "sha256:" + entry["sha256"] != digest:
            raise BackupError("source %s: blob %s of model %s has content sha256:%s; the store is damaged: remove "
                              "the model and pull it again" % (self.name, digest, model, entry["sha256"]))


class SpooledSource(Source):
    """Sources that first write a file to the scratch directory (a dump, a snapshot), then archive it."""

    def spool_path(self, name):
        return os.path.join(self.context.work_dir, "%s.%s" % (self.name, name))

    def add_spooled(self, archive, path, relative_path):
        try:
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
            return self.add(archive, self.member(relative_path), path, relative_path)
        finally:
            remove_quietly(path)


class PostgresSource(SpooledSource):
    """PostgreSQL databases (pgvector included) as ``pg_dump`` custom-format archives."""

    type = "postgres"

    def check_options(self):
        super().check_options()
        self.databases = [check_database_name(name) for name in self.option("databases", [])]
        if not self.databases:
            raise BackupError("source %s: databases must name at least one database" % self.name)
        self.client = Postgres(self.context.run_command, host=self.spec.get("host"), port=self.spec.get("port"),
                               user=self.spec.get("user"), password=self.spec.get("password"),
                               bin_dir=self.spec.get("bin_dir"))

    def plan(self):
        return dict(super().plan(), databases=self.databases)

    def write(self, archive):
        version = self.client.version()
        for database in self.databases:
            path = self.spool_path("%s.dump" % database)
            remove_quietly(path)
            self.client.dump(database, path)
            self.add_spooled(archive, path, "%s.dump" % database)
        return self.manifest_entry(databases=self.databases, pg_dump_version=version)


class QdrantSource(SpooledSource):
    """Qdrant collections (or the whole storage) through its snapshot API; server copies are deleted after."""

    type = "qdrant"

    def check_options(self):
        super().check_options()
        if not self.spec.get("url"):
            raise BackupError("source %s: url must be Qdrant's REST address, for example http://127.0.0.1:6333"
                              % self.name)

    def _client(self):
        try:
            return qdrant_http(self.spec["url"], api_key=self.spec.get("api_key"),
                               timeout=self.option("timeout", 300.0),
                               validate_certs=self.option("validate_certs", True),
                               ca_path=self.spec.get("ca_path"))
        except ApiError as exc:
            raise BackupError("source %s: %s" % (self.name, exc)) from None

    def plan(self):
        collections = self.option("collections", [])
        return dict(super().plan(), url=self.spec["url"], collections=collections or None,
                    snapshot="collections" if collections else "full")

    def write(self, archive):
        snapshots = []
        with self._client() as http:
            client = QdrantClient(http)
            try:
                version = client.version()
                for collection in self.option("collections", []) or [None]:
                    snapshots.append(self._snapshot(archive, client, collection))
            except ApiError as exc:
                raise BackupError("source %s: %s" % (self.name, exc)) from None
        return self.manifest_entry(url=self.spec["url"], qdrant_version=version, snapshots=snapshots)

    def _snapshot(self, archive, client, collection):
        description = client.create_snapshot(collection)
        name = description["name"]
        if "/" in name or name.startswith("."):
            raise BackupError("source %s: Qdrant named its snapshot %r, which is not a file name" % (self.name, name))
        relative = "%s/%s" % (collection or "full", name)
        path = self.spool_path(name)
        try:
            self._download(client, collection, name, path, description.get("checksum"))
            entry = self.add_spooled(archive, path, relative)
        finally:
            self._delete_server_copy(client, collection, name)
        return {"collection": collection, "snapshot": name, "path": relative, "size": entry["size"],
                "checksum": entry["sha256"], "creation_time": description.get("creation_time")}

    def _download(self, client, collection, name, path, checksum):
        try:
            with open(path, "wb") as handle:
                sink = HashingWriter(handle)
                client.download_snapshot(collection, name, sink)
        except OSError as exc:
            remove_quietly(path)
            raise BackupError(describe_os_error("write the snapshot download", path, exc)) from None
        if checksum and sink.hexdigest() != checksum:
            remove_quietly(path)
            raise BackupError("source %s: snapshot %s downloaded with sha256 %s, Qdrant announced %s; run the backup "
                              "again" % (self.name, name, sink.hexdigest(), checksum))

    def _delete_server_copy(self, client, collection, name):
        try:
            client.delete_snapshot(collection, name)
        except ApiError as exc:
            self.context.warn("source %s: could not delete the snapshot %s on the Qdrant server (%s); it takes disk "
                              "space there until removed" % (self.name, name, exc))


SOURCE_CLASSES = {cls.type: cls for cls in (DirectorySource, ConfigSource, ModelsSource, PostgresSource,
                                            QdrantSource)}


def make_sources(specs, context):
    """The source objects for the module's ``sources`` option; names must be unique."""
    if not specs:
        raise BackupError("sources must list at least one source")
    sources, names = [], set()
    for spec in specs:
        kind = spec.get("type")
        if kind not in SOURCE_CLASSES:
            raise BackupError("source type must be one of %s (got %r)" % (", ".join(SOURCE_CLASSES), kind))
        source = SOURCE_CLASSES[kind](spec, context)
        if source.name in names:
            raise BackupError("two sources are named %s; give each a distinct name" % source.name)
        names.add(source.name)
        sources.append(source)
    return sources
