from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args
from loopback import LoopbackServer


@pytest.fixture
def server():
    """A scripted HTTP server on loopback, stopped after the test."""
    started = LoopbackServer().start()
    yield started
    started.stop()


@pytest.fixture
def run_module():
    """Run a module's main() in-process with ``args``; return its JSON result and whether it failed."""

    def run(module, args, check_mode=False):
        module_args = dict(args, _ansible_check_mode=check_mode)
        output = io.StringIO()
        with patch_module_args(module_args), contextlib.redirect_stdout(output), \
                pytest.raises(SystemExit) as exit_info:
            module.main()
        result = json.loads(output.getvalue())
        result["exit_code"] = exit_info.value.code
        return result

    return run


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl command."""
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=namtech test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return directory
