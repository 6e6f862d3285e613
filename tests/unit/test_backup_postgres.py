"""The postgres source and target against a throwaway PostgreSQL cluster on a Unix socket (plain tables here;
pgvector is exercised on the lab)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ansible_collections.namtech.internal_ai.plugins.modules import ai_backup, ai_restore

BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*argv, check=True):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=check, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def cluster():
    if not (BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 server programs are not installed (Debian: postgresql-15)")
    base = Path(tempfile.mkdtemp(prefix="namtech-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    try:
        as_postgres(str(BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--no-sync")
        as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                    "-k %s -c listen_addresses='' -c fsync=off" % base, "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("cannot start a throwaway PostgreSQL cluster: %s" % (exc.stderr or exc))
    yield {"host": str(base), "user": "postgres", "bin_dir": str(BIN)}
    as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
    shutil.rmtree(base, ignore_errors=True)


def psql(cluster, database, sql):
    completed = subprocess.run([str(BIN / "psql"), "--host", cluster["host"], "--username", "postgres", "--dbname",
                                database, "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1", "--command",
                                sql], check=True, capture_output=True, text=True, timeout=60)
    return completed.stdout.strip()


FINGERPRINT = "SELECT count(*) || ':' || md5(string_agg(id || body || embedding::text, ',' ORDER BY id)) FROM docs"


@pytest.fixture
def rag(cluster):
    psql(cluster, "postgres", "DROP DATABASE IF EXISTS rag")
    psql(cluster, "postgres", "DROP DATABASE IF EXISTS rag_restored")
    psql(cluster, "postgres", "CREATE DATABASE rag")
    psql(cluster, "rag", "CREATE TABLE docs (id serial PRIMARY KEY, body text NOT NULL, embedding float8[] NOT NULL);"
                         "CREATE INDEX docs_body ON docs (body);"
                         "INSERT INTO docs (body, embedding) SELECT 'chunk ' || n, ARRAY[n * 0.5, n * 0.25, -n] "
                         "FROM generate_series(1, 500) AS n")
    return psql(cluster, "rag", FINGERPRINT)


def source(cluster, **extra):
    spec = {"type": "postgres", "name": "pg", "databases": ["rag"], "host": cluster["host"], "user": "postgres",
            "bin_dir": cluster["bin_dir"], "password": "not-needed-with-trust"}
    spec.update(extra)
    return spec


def test_dump_and_restore_into_a_new_database(cluster, rag, tmp_path, run_module):
    backup = run_module(ai_backup, {"sources": [source(cluster)], "destination": {"path": str(tmp_path)},
                                    "compression": "gzip"})
    assert backup["exit_code"] == 0, backup
    pg = backup["sources"][0]
    assert (pg["databases"], pg["file_count"]) == (["rag"], 1) and pg["pg_dump_version"].startswith("pg_dump (")
    assert "not-needed-with-trust" not in repr(backup)

    target = {"host": cluster["host"], "user": "postgres", "bin_dir": cluster["bin_dir"],
              "databases": {"rag": "rag_restored"}}
    plan = run_module(ai_restore, {"destination": {"path": str(tmp_path)}, "postgres": target}, check_mode=True)
    assert plan["changes"] == [{"source": "pg", "action": "restore database", "database": "rag",
                                "target": "rag_restored", "exists": False}]
    assert "rag_restored" not in psql(cluster, "postgres", "SELECT datname FROM pg_database").split()

    restored = run_module(ai_restore, {"destination": {"path": str(tmp_path)}, "postgres": target})
    assert restored["exit_code"] == 0, restored
    assert psql(cluster, "rag_restored", FINGERPRINT) == rag
    assert psql(cluster, "rag_restored", "SELECT indexname FROM pg_indexes WHERE tablename = 'docs' "
                                         "ORDER BY 1") == "docs_body\ndocs_pkey"


def test_restore_over_the_live_database_replaces_its_data(cluster, rag, tmp_path, run_module):
    run_module(ai_backup, {"sources": [source(cluster)], "destination": {"path": str(tmp_path)}})
    psql(cluster, "rag", "DELETE FROM docs WHERE id > 10; INSERT INTO docs (body, embedding) VALUES ('x', '{1}')")
    restored = run_module(ai_restore, {"destination": {"path": str(tmp_path)},
                                       "postgres": {"host": cluster["host"], "user": "postgres",
                                                    "bin_dir": cluster["bin_dir"]}})
    assert restored["exit_code"] == 0, restored
    assert restored["changes"][0]["exists"] is True
    assert psql(cluster, "rag", FINGERPRINT) == rag


def test_a_failing_dump_names_the_database_and_the_server_error(cluster, tmp_path, run_module):
    result = run_module(ai_backup, {"sources": [source(cluster, databases=["nope"])],
                                    "destination": {"path": str(tmp_path)}})
    assert result["failed"] is True
    assert result["msg"].startswith("pg_dump of database nope failed (pg_dump exited with 1): ")
    assert 'database "nope" does not exist' in result["msg"]
    assert [path.name for path in (tmp_path / "ai").iterdir()] == []


def test_an_unreachable_server_fails_the_restore_before_anything_changes(cluster, rag, tmp_path, run_module):
    run_module(ai_backup, {"sources": [source(cluster)], "destination": {"path": str(tmp_path)}})
    result = run_module(ai_restore, {"destination": {"path": str(tmp_path)},
                                     "postgres": {"host": str(tmp_path / "nosocket"), "user": "postgres",
                                                  "bin_dir": cluster["bin_dir"]}})
    assert result["failed"] is True
    assert result["msg"].startswith("listing the databases failed (psql exited with 2): ")
    assert result["msg"].endswith(". Check that PostgreSQL runs and host and port point at it")


def test_missing_client_programs_are_named(tmp_path, run_module):
    result = run_module(ai_backup, {"sources": [{"type": "postgres", "databases": ["rag"],
                                                 "bin_dir": str(tmp_path / "nothing")}],
                                    "destination": {"path": str(tmp_path)}})
    assert result["msg"].startswith("pg_dump --version failed (pg_dump exited with 127)")
    assert "Install the PostgreSQL client programs (Debian: postgresql-client) or set bin_dir" in result["msg"]
