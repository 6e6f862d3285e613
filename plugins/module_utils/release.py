# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The per-node model release record: which served alias points at which model version, since when.

One JSON file per node (``/var/lib/namtech_ai/releases.json`` by default), format 1::

    {
      "format": 1,
      "aliases": {
        "assistant": {
          "current": {"model": "lab-chat:v2", "digest": "<64 hex>", "engine": "ollama",
                      "since": "2026-03-01T10:00:00Z", "deployed_by": "awx-job-1234"},
          "previous": [{"model": "lab-chat:v1", "digest": "<64 hex>", "engine": "ollama",
                        "since": "2026-02-01T09:00:00Z", "until": "2026-03-01T10:00:00Z",
                        "deployed_by": "awx-job-1200"}],
          "candidate": {"model": "lab-chat:v3", "digest": "<64 hex>", "engine": "ollama",
                        "staged_at": "2026-03-02T08:00:00Z", "staged_by": "awx-job-1250"}
        }
      }
    }

``current`` and ``candidate`` are null when there is none; ``previous`` is newest first and never holds
the current version or the same version twice. ``digest`` is lower-case hex without ``sha256:`` (null
when an OpenAI-compatible engine serves a model without one). Timestamps are UTC, ISO 8601, to the second,
with a ``Z``. A reader must refuse a ``format`` it does not know.

The record only describes what the node serves; repointing the engine is another module's job.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import tempfile

from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    canonical_model_name,
    is_sha256_hex,
    normalize_digest,
)

FORMAT = 1
DEFAULT_PATH = "/var/lib/namtech_ai/releases.json"
ENGINES = ("ollama", "openai")
DEFAULT_ENGINE = "ollama"
ACTIONS = ("info", "stage", "promote", "rollback", "clear_candidate")
DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
SHORT_DIGEST = 12


class ReleaseError(Exception):
    """The record cannot be read, written or changed as asked; the text says what to do."""


def utc_now():
    """The clock every timestamp comes from; tests replace it."""
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_record():
    return {"format": FORMAT, "aliases": {}}


def empty_alias():
    return {"current": None, "previous": [], "candidate": None}


def version_of(model, digest, engine):
    """The version fields a task gives: model, normalised digest (or None), engine."""
    return {"model": model, "digest": normalize_digest(digest) if digest else None, "engine": engine}


def version_from(entry):
    """The version fields of a recorded entry (a candidate or a previous version)."""
    return {"model": entry["model"], "digest": entry.get("digest"), "engine": entry.get("engine") or DEFAULT_ENGINE}


def valid_digest(digest):
    return is_sha256_hex(normalize_digest(digest))


def identity(entry):
    """What makes two entries the same version, whatever their timestamps."""
    return entry.get("model"), entry.get("digest"), entry.get("engine") or DEFAULT_ENGINE


def describe(entry):
    digest = entry.get("digest")
    return "%s (%s)" % (entry.get("model"), digest[:SHORT_DIGEST] if digest else "no digest")


def render(document):
    """The file's text; also the diff's. Stable key order so unchanged records compare equal as text."""
    return json.dumps(document, indent=2) + "\n"


# -- reading ---------------------------------------------------------------------------------------

def load_record(path):
    """The record at ``path``; an empty record when the file does not exist yet (writing it says why it cannot)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return empty_record()
    except OSError as exc:
        raise ReleaseError("cannot read the release record %s: %s. Check the file's owner and permissions, or run "
                           "the task with become: true" % (path, exc.strerror or exc)) from None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReleaseError("the release record %s is not valid JSON (%s); it was left untouched. Restore it from a "
                           "backup, or move it aside to start a new record" % (path, exc)) from None
    problem = record_problem(record)
    if problem:
        raise ReleaseError("the release record %s is not in release record format %d: %s; it was left untouched. "
                           "Restore it from a backup, or move it aside to start a new record"
                           % (path, FORMAT, problem))
    return record


def record_problem(record):
    """Why ``record`` is not a format-1 record, or None."""
    if not isinstance(record, dict):
        return "the top level is %s, not an object" % type(record).__name__
    form = record.get("format")
    if isinstance(form, int) and not isinstance(form, bool) and form > FORMAT:
        return ("it is format %d, written by a newer namtech.internal_ai; upgrade the collection on the controller"
                % form)
    if form != FORMAT:
        return "'format' is %r, expected %d" % (form, FORMAT)
    aliases = record.get("aliases")
    if not isinstance(aliases, dict):
        return "'aliases' is not an object"
    for alias, entry in aliases.items():
        problem = alias_problem(entry)
        if problem:
            return "aliases.%s%s" % (alias, problem)
    return None


def alias_problem(entry):
    if not isinstance(entry, dict):
        return " is not an object"
    for field in ("current", "candidate"):
        if entry.get(field) is not None and not is_version_entry(entry[field]):
            return ".%s is not an object with a string 'model'" % field
    previous = entry.get("previous", [])
    if not isinstance(previous, list):
        return ".previous is not a list"
    for index, version in enumerate(previous):
        if not is_version_entry(version):
            return ".previous[%d] is not an object with a string 'model'" % index
    return None


def is_version_entry(version):
    return isinstance(version, dict) and isinstance(version.get("model"), str)


# -- writing ---------------------------------------------------------------------------------------

def write_record(path, record, atomic_move):
    """Write through a temporary file in the same directory and ``atomic_move`` it over ``path``.

    ``atomic_move(source, destination)`` is ``AnsibleModule.atomic_move`` in a module (it keeps the
    owner, mode and SELinux context of an existing file). A new file gets mode 0644 so an exporter can read it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    created = not os.path.exists(path)
    temp = None
    try:
        make_directory(directory)
        handle, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(render(sorted_record(record)))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, FILE_MODE)
        atomic_move(temp, path)
        temp = None
        if created:
            os.chmod(path, FILE_MODE)
    # AnsibleModule.atomic_move raises a bare Exception for a failed rename.
    except Exception as exc:  # pylint: disable=broad-except
        raise ReleaseError("cannot write the release record %s: %s. Run the task with become: true, or set path to "
                           "a file in a directory the remote user can write" % (path, os_reason(exc))) from None
    finally:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)


def make_directory(directory):
    if os.path.isdir(directory):
        return
    os.makedirs(directory, mode=DIRECTORY_MODE)
    os.chmod(directory, DIRECTORY_MODE)


def os_reason(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.strerror, exc.filename) if exc.filename else exc.strerror
    return str(exc)


def sorted_record(record):
    return {"format": FORMAT, "aliases": dict(sorted(record["aliases"].items()))}


# -- changing one alias ----------------------------------------------------------------------------

def current_entry(version, by, now):
    return {"model": version["model"], "digest": version["digest"], "engine": version["engine"],
            "since": now, "deployed_by": by}


def retired_entry(current, now):
    """The version that stops being current, as ``previous`` keeps it."""
    retired = {"model": current.get("model"), "digest": current.get("digest"),
               "engine": current.get("engine") or DEFAULT_ENGINE, "since": current.get("since"), "until": now,
               "deployed_by": current.get("deployed_by")}
    extra = dict((key, value) for key, value in current.items() if key not in retired)
    return dict(retired, **extra)


def candidate_entry(version, by, now):
    return {"model": version["model"], "digest": version["digest"], "engine": version["engine"],
            "staged_at": now, "staged_by": by}


def make_current(entry, version, by, now, keep_previous):
    """``version`` becomes current; the old current heads ``previous``, which keeps no duplicates."""
    old = entry["current"]
    previous = [item for item in entry["previous"] if identity(item) != identity(version)]
    if old is not None:
        previous = [item for item in previous if identity(item) != identity(old)]
        previous.insert(0, retired_entry(old, now))
    entry["previous"] = previous[:keep_previous]
    entry["current"] = current_entry(version, by, now)


def stage(entry, version, by, now):
    if entry["candidate"] is None or identity(entry["candidate"]) != identity(version):
        entry["candidate"] = candidate_entry(version, by, now)


def promote(entry, alias, version, *, by, now, keep_previous):
    """Make ``version`` (the staged candidate when None) current; nothing changes when it already is."""
    candidate = entry["candidate"]
    if version is None:
        if candidate is None:
            raise ReleaseError("alias %s has no staged candidate to promote. Stage one first (action=stage), or give "
                               "model (and digest) to promote" % alias)
        version = version_from(candidate)
    if candidate is not None and identity(candidate) == identity(version):
        entry["candidate"] = None
    if entry["current"] is None or identity(entry["current"]) != identity(version):
        make_current(entry, version, by, now, keep_previous)


def matches(entry, target):
    """``target`` names ``entry`` by model (tag-insensitive for Ollama) or by digest (12 hex digits or more)."""
    model, engine = entry.get("model"), entry.get("engine") or DEFAULT_ENGINE
    if model == target or (engine == "ollama" and canonical_model_name(model) == canonical_model_name(target)):
        return True
    digest, wanted = entry.get("digest"), normalize_digest(target)
    is_digest_prefix = len(wanted) >= SHORT_DIGEST and all(char in "0123456789abcdef" for char in wanted)
    return bool(digest) and is_digest_prefix and digest.startswith(wanted)


def rollback(entry, alias, target, *, by, now, keep_previous):
    """Make a previous version current again (the newest, or the newest that ``target`` names)."""
    current = entry["current"]
    if current is None:
        raise ReleaseError("alias %s has no current release to roll back from; record one with action=promote" % alias)
    if target is not None and matches(current, target):
        return
    previous = entry["previous"]
    if not previous:
        raise ReleaseError("alias %s has no previous version to roll back to (current: %s). Nothing was changed; "
                           "repoint the alias by hand and record it with action=promote" % (alias, describe(current)))
    chosen = previous[0] if target is None else next((item for item in previous if matches(item, target)), None)
    if chosen is None:
        known = ", ".join(describe(item) for item in previous)
        raise ReleaseError("alias %s has no previous version matching %r; the previous versions are: %s. Give one of "
                           "these models or digests as to" % (alias, target, known))
    make_current(entry, version_from(chosen), by, now, keep_previous)


def clear_candidate(entry):
    entry["candidate"] = None


class ReleaseRecord:
    """The record of one node, read once; ``apply`` changes it in memory, ``save`` writes it."""

    def __init__(self, path, clock=None):
        self.path = path
        self._clock = clock
        self.data = load_record(path)

    def now(self):
        return timestamp((self._clock or utc_now)())

    def entry(self, alias):
        found = self.data["aliases"].get(alias)
        return copy.deepcopy(found) if found is not None else None

    def apply(self, alias, action, *, version=None, target=None, by="ansible", keep_previous=5):
        """Change ``alias`` by ``action``; return its entry before and after (None when it has none)."""
        stored = self.entry(alias)
        before = None if stored is None else dict(empty_alias(), **stored)
        entry = copy.deepcopy(before) if before is not None else empty_alias()
        now = self.now()
        if action == "stage":
            stage(entry, version, by, now)
        elif action == "promote":
            promote(entry, alias, version, by=by, now=now, keep_previous=keep_previous)
        elif action == "rollback":
            rollback(entry, alias, target, by=by, now=now, keep_previous=keep_previous)
        elif action == "clear_candidate":
            clear_candidate(entry)
        else:
            raise ReleaseError("unknown action %r; use one of %s" % (action, ", ".join(ACTIONS)))
        after = entry if before is not None or entry != empty_alias() else None
        if after != before:
            self.data["aliases"][alias] = entry
        return before, copy.deepcopy(after)

    def save(self, atomic_move):
        write_record(self.path, self.data, atomic_move)
