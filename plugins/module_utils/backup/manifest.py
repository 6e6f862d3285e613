# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A backup's manifest: what it holds and how to check every byte of it, written after everything else.

It stays readable without the encryption key (listing and retention need it), so it holds names, sizes and
checksums but never file contents.
"""

from __future__ import annotations

import json
import posixpath

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError, is_backup_id

FORMAT = "namtech.internal_ai.backup"
FORMAT_VERSION = 1
# The collection version recorded in every manifest; a unit test keeps it equal to galaxy.yml.
COLLECTION_VERSION = "0.1.0"
SOURCE_TYPES = ("directory", "config", "models", "postgres", "qdrant")
REQUIRED_FIELDS = {
    "id": str, "name": str, "host": str, "started_at": str, "finished_at": str, "compression": str,
    "parts": list, "sources": list, "size": int,
}


def build_manifest(*, backup_id, set_name, host, started_at, finished_at, collection_version, compression, encryption,
                   parts, sources, engine=None, warnings=None):
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": backup_id,
        "name": set_name,
        "host": host,
        "started_at": started_at,
        "finished_at": finished_at,
        "collection_version": collection_version,
        "compression": compression,
        "encryption": encryption,
        "size": sum(part["size"] for part in parts),
        "parts": parts,
        "sources": sources,
        "engine": engine,
        "warnings": list(warnings or []),
    }


def dump_manifest(manifest):
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def load_manifest(data, backup_id):
    """Parse and check a manifest; a BackupError that names what is wrong with it."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BackupError("the manifest of backup %s is not valid JSON (%s); the backup is damaged" % (backup_id, exc)
                          ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("the manifest of backup %s is not a manifest of this collection's backups" % backup_id)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError("backup %s has manifest format %r; this version of namtech.internal_ai reads format %d "
                          "and older: upgrade the collection" % (backup_id, version, FORMAT_VERSION))
    for field, kind in REQUIRED_FIELDS.items():
        if not isinstance(manifest.get(field), kind):
            raise BackupError("the manifest of backup %s has no valid '%s' field; the backup is damaged"
                              % (backup_id, field))
    if manifest["id"] != backup_id or not is_backup_id(backup_id):
        raise BackupError("the manifest stored as backup %s describes backup %r" % (backup_id, manifest["id"]))
    for part in manifest["parts"]:
        if not (isinstance(part, dict) and isinstance(part.get("name"), str) and isinstance(part.get("size"), int)
                and isinstance(part.get("sha256"), str) and len(part["sha256"]) == 64):
            raise BackupError("the manifest of backup %s lists a part without name, size and sha256: %r"
                              % (backup_id, part))
        if "/" in part["name"] or part["name"].startswith("."):
            raise BackupError("the manifest of backup %s names an unsafe part %r" % (backup_id, part["name"]))
    for source in manifest["sources"]:
        if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES or not source.get("name"):
            raise BackupError("the manifest of backup %s has a source it cannot read: %r"
                              % (backup_id, {key: source.get(key) for key in ("name", "type")}
                                 if isinstance(source, dict) else source))
        check_entry_paths(source, backup_id)
    return manifest


def check_entry_paths(source, backup_id):
    """Restore writes to the paths the manifest names: refuse any that could lead outside the target."""
    absolute = source["type"] == "config"
    symlinks = set()
    for entry in source.get("files") or []:
        path = entry.get("path") if isinstance(entry, dict) else None
        safe = isinstance(path, str) and path and ".." not in path.split("/") and (
            path == "." or (posixpath.normpath(path) == path and path.startswith("/") == absolute))
        if not safe or not str(entry.get("member", "")).startswith(source["name"] + "/"):
            raise BackupError("the manifest of backup %s names an unsafe path %r in source %s; the backup was "
                              "altered. Nothing was restored" % (backup_id, path, source["name"]))
        parent = posixpath.dirname(path)
        while parent not in ("", "/", "."):
            if parent in symlinks:
                raise BackupError("the manifest of backup %s puts %r under the symlink %r in source %s; the backup "
                                  "was altered. Nothing was restored" % (backup_id, path, parent, source["name"]))
            parent = posixpath.dirname(parent)
        if entry.get("type") == "symlink":
            symlinks.add(path)


def source_summary(source):
    """A source's description without its per-file lists, for module results."""
    summary = dict((key, value) for key, value in source.items() if key not in ("files", "blobs"))
    files = source.get("files") or []
    summary["file_count"] = sum(1 for entry in files if entry.get("type") == "file")
    summary["bytes"] = sum(entry.get("size", 0) for entry in files if entry.get("type") == "file")
    return summary


def manifest_summary(manifest):
    summary = dict((key, value) for key, value in manifest.items() if key != "sources")
    summary["sources"] = [source_summary(source) for source in manifest["sources"]]
    return summary
