"""The ``ollama`` CLI from the built release archive, run as subprocesses like on a lab host."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def install(artifact_tree, tmp_path_factory) -> Path:
    """The v0.12.5-lab archive unpacked like ``tar -C /usr/local -xzf ollama-linux-amd64.tgz``."""
    archive = artifact_tree / "releases/v0.12.5-lab/ollama-linux-amd64.tgz"
    return extract(archive, tmp_path_factory.mktemp("usr-local"))


@pytest.fixture
def cli_env(tmp_path, artifact_server) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "PYTHON"))}
    env.update(
        OLLAMA_HOST=f"127.0.0.1:{free_port()}",
        OLLAMA_MODELS=str(tmp_path / "models"),
        OLLAMA_LAB_REGISTRY=artifact_server.url,
    )
    return env


def ollama(install: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # The launcher's shebang is /usr/bin/python3 (Debian 12); run it with this interpreter so the test
    # does not depend on that path, while still going through bin/ollama exactly as installed.
    command = [sys.executable, str(install / "bin/ollama"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture
def served(install, cli_env, wait_until):
    command = [sys.executable, str(install / "bin/ollama"), "serve"]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = "http://" + cli_env["OLLAMA_HOST"]
    try:
        wait_until(lambda: answers(url + "/") or process.poll() is not None, timeout=15)
        assert process.poll() is None, process.communicate()[1]
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=TIMEOUT)


def test_archive_has_the_official_layout(artifact_tree, install):
    launcher = install / "bin/ollama"
    assert launcher.read_text().startswith("#!/usr/bin/python3\n")
    assert launcher.stat().st_mode & stat.S_IXUSR
    assert (install / "lib/ollama").is_dir()
    sums = (artifact_tree / "releases/v0.12.5-lab/sha256sum.txt").read_text()
    assert sums.endswith("  ./ollama-linux-amd64.tgz\n")


def test_version_without_a_server_warns_like_ollama(install, cli_env):
    result = ollama(install, cli_env, "--version")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Warning: could not connect to a running Ollama instance",
        "Warning: client version is 0.12.5-lab",
    ]


def test_serve_version_pull_list_ps_cp_rm(install, cli_env, served):
    assert ollama(install, cli_env, "--version").stdout == "ollama version is 0.12.5-lab\n"

    pulled = ollama(install, cli_env, "pull", "lab-chat:v1")
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stdout.splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[-1] == "success"

    listed = ollama(install, cli_env, "list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert listed[1].startswith("lab-chat:v1 ")
    assert "4.2 MB" in listed[1]

    assert ollama(install, cli_env, "run", "lab-chat:v1", "What is 2 + 2?").stdout == "2 + 2 equals 4.\n"
    running = ollama(install, cli_env, "ps").stdout.splitlines()
    assert running[1].startswith("lab-chat:v1 ") and "100% CPU" in running[1]

    assert (
        ollama(install, cli_env, "cp", "lab-chat:v1", "lab-chat:prod").stdout
        == "copied 'lab-chat:v1' to 'lab-chat:prod'\n"
    )
    assert ollama(install, cli_env, "rm", "lab-chat:v1").stdout == "deleted 'lab-chat:v1'\n"
    missing = ollama(install, cli_env, "rm", "lab-chat:v1")
    assert missing.returncode == 1
    assert missing.stderr == "Error: model 'lab-chat:v1' not found\n"


def test_crash_fault_ends_the_process(install, cli_env, served):
    request = urllib.request.Request(
        "http://" + cli_env["OLLAMA_HOST"] + "/lab/faults", data=b'{"crash": true}', method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert served.wait(timeout=10) != 0
    assert "lab faults changed" in served.communicate(timeout=TIMEOUT)[1]


def test_client_commands_without_a_server_fail_clearly(install, cli_env):
    result = ollama(install, cli_env, "list")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: could not connect to ollama server")


def test_sigterm_stops_the_server_cleanly(served):
    served.terminate()
    assert served.wait(timeout=10) == 0


def test_crash_on_start_from_the_environment(install, cli_env):
    result = ollama(install, {**cli_env, "OLLAMA_LAB_CRASH": "1"}, "serve")
    assert result.returncode == 70
    assert "OLLAMA_LAB_CRASH" in result.stderr


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3 like a Debian 12 host")
def test_launcher_runs_through_its_shebang(install, cli_env):
    env = {key: value for key, value in cli_env.items() if key != "PATH"} | {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(install / "bin/ollama"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("Warning: client version is 0.12.5-lab\n")
