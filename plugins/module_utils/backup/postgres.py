# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PostgreSQL (pgvector included) through its own client programs: pg_dump, pg_restore, psql, createdb.

Commands are argument lists run by the module (never a shell); the password travels in ``PGPASSWORD``.
"""

from __future__ import annotations

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError, command_failure

CONNECTION_ERRORS = ("connection to server", "could not connect", "Connection refused")


class Postgres:
    def __init__(self, run_command, *, host=None, port=None, user=None, password=None, bin_dir=None):
        self.run_command = run_command
        self.host, self.port, self.user, self.password = host, port, user, password
        self.bin_dir = bin_dir

    def program(self, name):
        return "%s/%s" % (self.bin_dir.rstrip("/"), name) if self.bin_dir else name

    def connection_args(self):
        args = ["--no-password"]
        if self.host:
            args.append("--host=%s" % self.host)
        if self.port:
            args.append("--port=%d" % self.port)
        if self.user:
            args.append("--username=%s" % self.user)
        return args

    def _run(self, what, argv):
        environ = {"PGPASSWORD": self.password} if self.password else None
        rc, out, err = self.run_command(argv, environ_update=environ)
        if rc != 0:
            hint = ""
            if rc == 127:
                hint = ". Install the PostgreSQL client programs (Debian: postgresql-client) or set bin_dir"
            elif "authentication failed" in (err or "") or "no password supplied" in (err or ""):
                hint = ". Check user and password"
            elif any(text in (err or "") for text in CONNECTION_ERRORS):
                hint = ". Check that PostgreSQL runs and host and port point at it"
            raise BackupError(command_failure(what, argv, rc, err) + hint)
        return out

    def version(self):
        return self._run("pg_dump --version", [self.program("pg_dump"), "--version"]).strip()

    def dump(self, database, path):
        argv = [self.program("pg_dump"), "--format=custom", "--file=%s" % path, *self.connection_args(),
                "--dbname=%s" % database]
        self._run("pg_dump of database %s" % database, argv)

    def databases(self):
        argv = [self.program("psql"), *self.connection_args(), "--dbname=postgres", "--tuples-only", "--no-align",
                "--command", "SELECT datname FROM pg_database"]
        out = self._run("listing the databases", argv)
        return set(line.strip() for line in out.splitlines() if line.strip())

    def create_database(self, database):
        self._run("createdb %s" % database, [self.program("createdb"), *self.connection_args(), "--", database])

    def restore(self, database, path, clean=True, no_owner=False):
        argv = [self.program("pg_restore"), "--exit-on-error", "--single-transaction", *self.connection_args()]
        if clean:
            argv += ["--clean", "--if-exists"]
        if no_owner:
            argv.append("--no-owner")
        argv += ["--dbname=%s" % database, path]
        self._run("pg_restore into database %s" % database, argv)
