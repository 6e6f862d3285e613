"""One example's piece of the file system, the process environment pointed at it, and a bound on its run time."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from unittest import mock

from hostile.payloads import TAG

STAND_INS = ("pg_dump", "pg_restore", "psql", "createdb", "dropdb", "systemctl")
# Records its arguments; answers --version and systemctl is-active; as pg_dump, writes the --file it is given.
STAND_IN = """#!/bin/sh
{ printf '%%s\\037' "$0" "$@"; printf '\\036'; } >> '%s'
case "$1" in
  is-active) exit 3 ;;
  --version) echo "${0##*/} (PostgreSQL) 15.8"; exit 0 ;;
esac
for arg in "$@"; do
  case "$arg" in --file=*) printf PGDMP > "${arg#--file=}"; exit 0 ;; esac
done
exit 1
"""


class Sandbox:
    """``base/sandbox`` is where the example may write; ``base/canary`` and everything above ``base`` is outside.

    The programs a module may run (pg_dump, systemctl...) are stand-ins in ``sandbox/bin`` that record their
    arguments.
    """

    def __init__(self, root):
        self.base = Path(tempfile.mkdtemp(prefix="example-", dir=root))
        self.inside = self.base / "sandbox"
        self.canary = self.base / "canary"
        for name in ("cwd", "tmp", "bin", "home", "ansible-tmp", "work"):
            (self.inside / name).mkdir(parents=True)
        (self.canary / "etc").mkdir(parents=True)
        (self.canary / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (self.canary / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
        (self.canary / "releases.json").write_text('{"format": 1, "aliases": {}}\n')
        (self.inside / "file.txt").write_text("a file where a directory may be expected\n")
        self.call_log = self.inside / "calls.log"
        for program in STAND_INS:
            path = self.inside / "bin" / program
            path.write_text(STAND_IN % self.call_log)
            path.chmod(0o755)

    def path(self, *parts):
        return str(self.inside.joinpath(*parts))

    def calls(self):
        """The argument vectors the stand-in programs were run with."""
        if not self.call_log.exists():
            return []
        text = self.call_log.read_bytes().decode("utf-8", "surrogateescape")
        return [record.split("\x1f")[:-1] for record in text.split("\x1e") if record]

    def outside_state(self):
        """Everything under ``base`` but the sandbox, the names beside ``base`` and one level up, and what a traversal
        into /tmp would have created."""
        state = tree_state(self.base, skip=self.inside)
        for directory in (self.base.parent, self.base.parent.parent):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if path != str(self.base):
                    state.setdefault(path, ("listed",))
        for path in glob.glob("/tmp/%s*" % TAG):
            state[path] = ("listed",)
        return state

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)
        remove_escapes()


def remove_escapes():
    """Remove what an injection or a traversal left in /tmp, so that the next example is judged on its own."""
    for path in glob.glob("/tmp/%s*" % TAG):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def tree_state(root, skip):
    """``{path: (kind, mode, size, mtime)}`` of everything under ``root`` except ``skip``; directories by mode only."""
    state = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if os.path.join(directory, name) != str(skip)]
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                state[path] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                state[path] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns)
    return state


@contextlib.contextmanager
def environment_of(sandbox):
    """The process as a module on a node would see it, pointed at the sandbox: cwd, HOME, TMPDIR, PATH."""
    environment = {"PATH": sandbox.path("bin"), "HOME": sandbox.path("home"), "TMPDIR": sandbox.path("tmp"),
                   "LANG": "C.UTF-8"}
    previous = os.getcwd()
    os.chdir(sandbox.path("cwd"))
    try:
        with mock.patch.dict(os.environ, environment, clear=True), \
                mock.patch.object(tempfile, "tempdir", sandbox.path("tmp")):
            yield
    finally:
        os.chdir(previous)


class ExampleStopped(BaseException):
    """Raised in the module by the watchdog: a BaseException, so that a module's ``except Exception`` cannot eat it.

    ``busy`` tells a module that was still talking to its servers (a long run the task asked for, such as many
    repetitions) from one that was stuck.
    """

    def __init__(self, message, busy):
        super().__init__(message)
        self.busy = busy


@contextlib.contextmanager
def watchdog(seconds, activity):
    """Stop the module after ``seconds``; ``activity()`` is a count of what it did that the world saw."""
    ticks = {"elapsed": 0, "activity": activity()}

    def tick(_signum, _frame):
        ticks["elapsed"] += 1
        current = activity()
        if ticks["elapsed"] >= seconds:
            busy = current != ticks["activity"]
            raise ExampleStopped("the module ran for more than %ss%s" % (
                seconds, " (still busy)" if busy else " and did nothing the world saw in its last second"), busy)
        ticks["activity"] = current

    previous = signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 1, 1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
