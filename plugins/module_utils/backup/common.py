# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every part of the backup package shares: its error, backup ids, hashing, commands."""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import os
import re
import subprocess

CHUNK_SIZE = 1024 * 1024
ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
ID_PATTERN = re.compile(r"^([0-9]{8}T[0-9]{6}Z)-([A-Za-z0-9][A-Za-z0-9._-]{0,99})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class BackupError(Exception):
    """A backup or restore cannot go on. ``str(error)`` says what went wrong and what to do."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso_time(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_name(name, what):
    """Names end up in paths and object keys: letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in (".", ".."):
        raise BackupError("%s %r is not a valid name: use letters, digits, '.', '_' and '-' (at most 100 "
                          "characters, starting with a letter or digit)" % (what, name))
    return name


def host_label(host):
    """The host part of a backup id: the short host name reduced to the characters an id allows."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", (host or "").split(".")[0]).strip("-._")
    return cleaned[:100] or "host"


def new_backup_id(moment, host):
    """``20261127T021500Z-node1``: ids sort by time, and name the host that made them."""
    return "%s-%s" % (moment.astimezone(datetime.timezone.utc).strftime(ID_TIME_FORMAT), host_label(host))


def is_backup_id(text):
    return isinstance(text, str) and ID_PATTERN.match(text) is not None


def backup_time(backup_id):
    """The UTC time a backup started, read from its id."""
    match = ID_PATTERN.match(backup_id or "")
    if match is None:
        raise BackupError("%r is not a backup id (expected YYYYmmddTHHMMSSZ-HOST, for example "
                          "20261127T021500Z-node1)" % (backup_id,))
    parsed = datetime.datetime.strptime(match.group(1), ID_TIME_FORMAT)
    return parsed.replace(tzinfo=datetime.timezone.utc)


def sha256_of_file(path):
    """``(hex digest, size)`` of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                return digest.hexdigest(), size
            digest.update(chunk)
            size += len(chunk)


class HashingReader:
    """Reads from ``source`` and keeps the sha256 and byte count of what passed through."""

    def __init__(self, source):
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size=-1):
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self):
        return self.digest.hexdigest()


class HashingWriter:
    """Writes to ``sink`` and keeps the sha256 and byte count of what passed through."""

    def __init__(self, sink):
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sink.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self):
        return self.digest.hexdigest()


def os_error_hint(exc):
    """What an operator can do about an OSError, by its errno."""
    hints = {
        errno.ENOSPC: "the disk is full: free space there or choose another place",
        errno.EDQUOT: "the disk quota is exhausted: free space there or raise the quota",
        errno.EACCES: "permission denied: run as a user that may write there (become: true)",
        errno.EPERM: "operation not permitted: run as root (become: true)",
        errno.EROFS: "the file system is read-only",
        errno.ENOENT: "it does not exist",
    }
    return hints.get(exc.errno, exc.strerror or str(exc))


def describe_os_error(action, path, exc):
    return "cannot %s %s: %s (%s)" % (action, path, os_error_hint(exc), exc.strerror or exc)


def remove_quietly(path):
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_directory(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def subprocess_runner(argv, environ_update=None, cwd=None):
    """A stand-in for ``AnsibleModule.run_command`` (argument list, never a shell) outside Ansible."""
    env = dict(os.environ, **(environ_update or {}))
    try:
        # an argument list, never a shell
        completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
        return 127, "", "%s: %s" % (argv[0], getattr(exc, "strerror", None) or exc)
    return completed.returncode, completed.stdout, completed.stderr


def module_runner(module):
    """Run commands through the module, so Ansible's own rules (no shell, logging, no_log) apply."""

    def run(argv, environ_update=None, cwd=None):
        try:
            return module.run_command(argv, environ_update=environ_update, cwd=cwd, expand_user_and_vars=False,
                                      handle_exceptions=False)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            return 127, "", "%s: %s" % (argv[0], getattr(exc, "strerror", None) or exc)

    return run


def exit_with_result(module, produce):
    """End the module with the result ``produce()`` returns, its ``warnings`` shown as Ansible warnings; a
    BackupError fails the module with its sentence."""
    try:
        result = produce()
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


def command_failure(what, argv, rc, stderr):
    """A sentence for a command that failed, with the last lines it wrote to stderr."""
    lines = [line for line in (stderr or "").strip().splitlines() if line.strip()]
    tail = " ".join(lines[-3:]) if lines else "no error output"
    return "%s failed (%s exited with %d): %s" % (what, os.path.basename(argv[0]), rc, tail)
