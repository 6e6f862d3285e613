"""The bugs test_hostile_inputs.py found, each as its smallest reproducer: a hostile argument makes the module fail
with a sentence (or be handled), not a traceback."""

from __future__ import annotations

import pytest
from hostile.cases import make_backup_set, tco_inputs

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.qdrant import QdrantClient, qdrant_http
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import write_atomically
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError, HttpClient
from ansible_collections.namtech.internal_ai.plugins.modules import (
    ai_backup,
    ai_restore,
    haproxy_server,
    llm_eval,
    llm_health,
    model_release,
    ollama_info,
    tco_report,
)


def fails_saying(result, start):
    assert (result["exit_code"], result.get("failed")) == (1, True)
    assert result["msg"].startswith(start), result["msg"]


@pytest.mark.parametrize(("option", "value"), [("connect_timeout", 1e10), ("timeout", float("inf")),
                                               ("timeout", float("nan"))])
def test_a_timeout_a_socket_cannot_take_fails_cleanly(run_module, server, option, value):
    # socket.settimeout raises OverflowError above ~9.2e9 s, ValueError for NaN
    fails_saying(run_module(ollama_info, {"url": server.url, option: value}), "%s must be" % option)
    assert server.requests == []


@pytest.mark.parametrize(("option", "value"), [("timeout", 1e10), ("wait_timeout", float("nan"))])
def test_a_haproxy_timeout_a_socket_cannot_take_fails_cleanly(run_module, tmp_path, option, value):
    result = run_module(haproxy_server, {"runtime_api": [str(tmp_path / "admin.sock")], "name": "n1",
                                         "state": "drain", option: value})
    fails_saying(result, "%s must be" % option)


@pytest.mark.parametrize("token", ["tök€n", "token\r\nX-Injected: 1"])
def test_an_api_token_a_header_cannot_carry_fails_cleanly(run_module, server, token):
    result = run_module(ollama_info, {"url": server.url, "api_token": token})
    fails_saying(result, "api_token must be printable ASCII characters")
    assert server.requests == []


def test_credentials_that_are_not_utf8_are_refused(server):
    with pytest.raises(ApiError, match="url_password must be valid UTF-8 text"):
        HttpClient(server.url, username="ops", password="caf\udce9")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:1/\x00", "http://%s.example" % ("a" * 64)])
def test_a_url_that_cannot_be_parsed_fails_cleanly(run_module, url):
    # httpx.InvalidURL (a bad port, a control character) and UnicodeError (IDNA: a label over 63 characters)
    fails_saying(run_module(ollama_info, {"url": url, "retries": 0}), "url %r is not a valid URL" % url)


UNBUILDABLE_REQUESTS = [({"temperature": float("nan")}, None), ({"prompt": "caf\udce9"}, None),
                        (None, {"query": "x" * 70000})]


@pytest.mark.parametrize(("json_body", "params"), UNBUILDABLE_REQUESTS)
def test_a_request_httpx_cannot_build_is_an_api_error(server, json_body, params):
    with HttpClient(server.url, retries=0) as client, pytest.raises(ApiError, match="cannot make the request"):
        client.request_json("POST", "/api/v1/query", json_body=json_body, params=params)
    assert server.requests == []


@pytest.mark.parametrize(("module", "args", "option"), [
    (model_release, {"path": "{tmp}/releases\x00.json"}, "path"),
    (llm_eval, {"suite": "{tmp}/suite\x00.yml", "model": "m", "url": "http://127.0.0.1:9"}, "suite"),
    (tco_report, {"currency": "EUR", "hosts": [], "report_dir": "{tmp}/re\x00ports"}, "report_dir"),
    (ai_backup, {"destination": {"path": "{tmp}/back\x00ups"}, "sources": [{"type": "config", "paths": ["/etc"]}]},
     "destination.path"),
    (ai_backup, {"destination": {"path": "{tmp}"}, "sources": [{"type": "config", "paths": ["/etc", "/a\x00"]}]},
     "sources[0].paths"),
    (ai_restore, {"destination": {"path": "{tmp}"}, "work_dir": "{tmp}/wo\x00rk"}, "work_dir"),
])
def test_a_path_with_a_nul_byte_fails_cleanly(run_module, tmp_path, module, args, option):
    # open(), os.stat() and the like raise ValueError for it, not the OSError the modules handle
    def in_tmp(value):
        if isinstance(value, str):
            return value.replace("{tmp}", str(tmp_path))
        if isinstance(value, dict):
            return {key: in_tmp(item) for key, item in value.items()}
        return [in_tmp(item) for item in value] if isinstance(value, list) else value

    fails_saying(run_module(module, in_tmp(args)), "%s must not contain a NUL byte" % option)


def test_a_tls_file_path_with_a_nul_byte_fails_cleanly(run_module, server, tmp_path):
    result = run_module(ollama_info, {"url": server.url, "ca_path": str(tmp_path / "ca\x00.pem")})
    fails_saying(result, "cannot load the TLS files")


@pytest.mark.parametrize("config_root", ["a-file", "a-file/under-it", "x" * 300])
def test_a_config_root_that_cannot_be_a_directory_fails_cleanly(run_module, tmp_path, config_root):
    # os.lstat raised NotADirectoryError or ENAMETOOLONG, and only FileNotFoundError was handled
    backups = make_backup_set(tmp_path / "made")
    (tmp_path / "a-file").write_text("not a directory\n")
    result = run_module(ai_restore, {"name": "node1", "destination": {"path": str(backups)}, "sources": ["config"],
                                     "config_root": str(tmp_path / config_root), "work_dir": str(tmp_path)})
    fails_saying(result, "cannot inspect %s/" % (tmp_path / config_root))


def test_a_cost_near_the_float_limit_fails_cleanly(run_module, tmp_path):
    # the chart's axis became an int beyond float range: OverflowError
    args = dict(tco_inputs(str(tmp_path / "reports")), electricity_price_per_kwh=9.5e305)
    fails_saying(run_module(tco_report, args), "electricity_price_per_kwh must be at most 1e+15 in size")
    assert not (tmp_path / "reports").exists()


def test_a_name_that_is_not_utf8_is_written_escaped(tmp_path):
    write_atomically(str(tmp_path / "report.md"), "provider caf\udce9\n")
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == "provider caf\\udce9\n"


def test_huge_repetitions_fail_before_the_run_is_planned(run_module, tmp_path):
    # every request was planned up front: 10**30 repetitions filled the memory
    result = run_module(llm_eval, {"suite": str(tmp_path / "suite.yml"), "model": "m", "repetitions": 10**30})
    fails_saying(result, "repetitions must be between 1 and 1000")


def test_huge_probes_fail_before_the_checks_are_planned(run_module, server):
    fails_saying(run_module(llm_health, {"url": server.url, "model": "m", "probes": 10**30}),
                 "probes must be between 0 and 100")
    assert server.requests == []


@pytest.mark.parametrize("collection", ["..", "."])
def test_a_qdrant_collection_named_like_a_dot_segment_sends_nothing(server, collection):
    # quote() keeps dots and URLs resolve them: /collections/../snapshots is the full-storage snapshot
    with qdrant_http(server.url, retries=0) as http, pytest.raises(ApiError, match="cannot be a Qdrant collection"):
        QdrantClient(http).create_snapshot(collection)
    assert server.requests == []
