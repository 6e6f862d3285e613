"""haproxy_server against a real HAProxy on loopback, with real backend servers and real in-flight requests."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest
from loopback import LoopbackServer, free_port, json_answer

from ansible_collections.namtech.internal_ai.plugins.module_utils.haproxy import HAProxyError, RuntimeApi
from ansible_collections.namtech.internal_ai.plugins.modules import haproxy_server

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make bootstrap)")

CONFIG = """
global
    stats socket {socket} mode 600 level admin
    stats socket ipv4@127.0.0.1:{admin_port} level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend ai
    bind 127.0.0.1:{frontend_port}
    default_backend ai_ollama
backend ai_ollama
    balance leastconn
    option httpchk GET /health
    server n1 127.0.0.1:{n1_port} check inter 100 fall 1 rise 1
    server n2 127.0.0.1:{n2_port} check inter 100 fall 1 rise 1
backend ai_vllm
    server n1 127.0.0.1:{n1_port}
"""


def wait_for(condition, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met within %ss" % timeout)
        time.sleep(interval)


class Balancer:
    """A real haproxy (master-worker, foreground) in front of a live node n1 and a dead node n2."""

    def __init__(self, directory):
        self.release = threading.Event()
        self.healthy = threading.Event()
        self.healthy.set()
        self.node = LoopbackServer().route("GET", "/health", self._health).route("GET", "/slow", self._slow)
        self.node.start()
        self.socket = str(directory / "admin.sock")
        self.tcp = "127.0.0.1:%d" % free_port()
        self.url = "http://127.0.0.1:%d" % free_port()
        config = directory / "haproxy.cfg"
        config.write_text(CONFIG.format(socket=self.socket, admin_port=self.tcp.rsplit(":", 1)[1],
                                        frontend_port=self.url.rsplit(":", 1)[1],
                                        n1_port=self.node.url.rsplit(":", 1)[1], n2_port=free_port()))
        self.process = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.api = RuntimeApi(self.socket)
        wait_for(lambda: self.operational("ai_ollama", "n1") == "up")

    def _health(self, handler):
        json_answer({}, 200 if self.healthy.is_set() else 500)(handler)

    def _slow(self, handler):
        self.release.wait(30)
        json_answer({"done": True})(handler)

    def record(self, backend, server):
        try:
            return next(r for r in self.api.servers() if (r["backend"], r["server"]) == (backend, server))
        except (HAProxyError, StopIteration):  # haproxy still starting
            return None

    def operational(self, backend, server):
        found = self.record(backend, server)
        return found and found["operational"]

    def start_slow_request(self):
        outcome = {}

        def ask():
            try:
                outcome["status"] = httpx.get(self.url + "/slow", timeout=30).status_code
            except httpx.HTTPError as exc:
                outcome["error"] = exc
            outcome["finished"] = time.monotonic()

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        wait_for(lambda: self.record("ai_ollama", "n1")["sessions"] == 1)
        return thread, outcome

    def stop(self):
        self.release.set()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        self.node.stop()


@pytest.fixture
def balancer(tmp_path):
    started = Balancer(tmp_path)
    yield started
    started.stop()


def test_drain_is_applied_then_idempotent_with_a_diff(balancer, run_module):
    args = {"runtime_api": [balancer.socket], "name": "n1", "backends": ["ai_ollama"], "state": "drain",
            "_ansible_diff": True}
    first = run_module(haproxy_server, args)
    assert first["exit_code"] == 0 and first["changed"] is True
    assert first["servers"][0]["before"]["state"] == "ready"
    assert first["servers"][0]["after"]["state"] == "drain"
    assert balancer.record("ai_ollama", "n1")["state"] == "drain"
    assert balancer.record("ai_vllm", "n1")["state"] == "ready"
    assert first["diff"] == {
        "before": "%s ai_ollama/n1: state=ready weight=1 sessions=0\n" % balancer.socket,
        "after": "%s ai_ollama/n1: state=drain weight=1 sessions=0\n" % balancer.socket}
    second = run_module(haproxy_server, args)
    assert second["changed"] is False


def test_check_mode_reports_the_change_and_changes_nothing(balancer, run_module):
    result = run_module(haproxy_server, {"runtime_api": [balancer.tcp], "name": "n1", "state": "maint",
                                         "weight": 7}, check_mode=True)
    assert result["changed"] is True
    assert {(s["backend"], s["after"]["state"], s["after"]["weight"]) for s in result["servers"]} == {
        ("ai_ollama", "maint", 7), ("ai_vllm", "maint", 7)}
    assert balancer.record("ai_ollama", "n1")["state"] == "ready"
    assert balancer.record("ai_ollama", "n1")["weight"] == 1


def test_without_backends_every_backend_with_the_server_changes_over_tcp(balancer, run_module):
    result = run_module(haproxy_server, {"runtime_api": [balancer.tcp], "name": "n1", "state": "maint",
                                         "weight": 50})
    assert result["changed"] is True
    assert sorted(s["backend"] for s in result["servers"]) == ["ai_ollama", "ai_vllm"]
    for backend in ("ai_ollama", "ai_vllm"):
        record = balancer.record(backend, "n1")
        assert (record["state"], record["weight"]) == ("maint", 50)
    back = run_module(haproxy_server, {"runtime_api": [balancer.tcp], "name": "n1", "state": "ready"})
    assert back["changed"] is True and balancer.record("ai_ollama", "n1")["state"] == "ready"


def test_drain_waits_until_the_in_flight_request_has_finished(balancer, run_module):
    request, outcome = balancer.start_slow_request()

    def release_once_drained():
        wait_for(lambda: balancer.record("ai_ollama", "n1")["state"] == "drain")
        balancer.release.set()

    threading.Thread(target=release_once_drained, daemon=True).start()
    result = run_module(haproxy_server, {"runtime_api": [balancer.socket], "name": "n1", "backends": ["ai_ollama"],
                                         "state": "drain", "wait": True, "wait_timeout": 20, "wait_interval": 0.05})
    returned = time.monotonic()
    request.join(timeout=10)
    assert result["exit_code"] == 0
    assert outcome["status"] == 200
    assert outcome["finished"] <= returned
    assert result["servers"][0]["before"]["sessions"] == 1
    assert result["servers"][0]["after"]["sessions"] == 0
    assert result["servers"][0]["waited"] > 0


def test_a_live_server_that_stays_busy_fails_after_the_timeout(balancer, run_module):
    request, outcome = balancer.start_slow_request()
    started = time.monotonic()
    result = run_module(haproxy_server, {"runtime_api": [balancer.socket], "name": "n1", "backends": ["ai_ollama"],
                                         "state": "drain", "wait": True, "wait_timeout": 1, "wait_interval": 0.1})
    assert time.monotonic() - started < 5
    assert result["exit_code"] == 1
    assert result["msg"] == (
        "waited 1s and requests are still in flight: %s ai_ollama/n1 has 1 sessions and 0 queued. Raise "
        "wait_timeout, or find what keeps the connections open" % balancer.socket)
    assert result["servers"][0]["after"]["state"] == "drain"
    balancer.release.set()
    request.join(timeout=10)
    assert outcome["status"] == 200, "draining must not cut the request off"


def test_a_server_that_is_down_is_not_waited_for(balancer, run_module):
    balancer.start_slow_request()
    balancer.healthy.clear()
    wait_for(lambda: balancer.operational("ai_ollama", "n1") == "down")
    started = time.monotonic()
    result = run_module(haproxy_server, {"runtime_api": [balancer.socket], "name": "n1", "backends": ["ai_ollama"],
                                         "state": "drain", "wait": True, "wait_timeout": 30})
    assert time.monotonic() - started < 5
    assert result["exit_code"] == 0
    assert result["servers"][0]["before"]["operational"] == "down"
    assert result["servers"][0]["waited"] == 0


@pytest.mark.parametrize(("args", "message"), [
    ({"backends": ["ai_missing"]}, "backend ai_missing does not exist on {socket}; its backends are: ai_ollama, "
                                   "ai_vllm"),
    ({"name": "n9", "backends": ["ai_ollama"]}, "backend ai_ollama on {socket} has no server n9; its servers are: "
                                                "n1, n2"),
    ({"name": "n9"}, "no backend on {socket} has a server called n9"),
    ({"weight": 300}, "weight must be between 0 and 256 (got 300)"),
    ({"wait_timeout": 0}, "wait_timeout must be a positive number of seconds (got 0.0)"),
])
def test_bad_targets_fail_with_what_exists(balancer, run_module, args, message):
    result = run_module(haproxy_server, dict({"runtime_api": [balancer.socket], "name": "n1", "state": "drain"},
                                             **args))
    assert result["exit_code"] == 1
    assert result["msg"] == message.format(socket=balancer.socket)
    assert balancer.record("ai_ollama", "n1")["state"] == "ready"


def test_an_unreachable_runtime_api(tmp_path, run_module):
    missing = str(tmp_path / "absent.sock")
    result = run_module(haproxy_server, {"runtime_api": [missing], "name": "n1", "state": "drain"})
    assert result["exit_code"] == 1
    assert result["msg"] == ("cannot use the HAProxy runtime API at %s ([Errno 2] No such file or directory). Check "
                             "that haproxy runs and that its config has 'stats socket %s level admin'"
                             % (missing, missing))


def test_a_malformed_endpoint(run_module):
    result = run_module(haproxy_server, {"runtime_api": ["localhost"], "name": "n1", "state": "drain"})
    assert result["exit_code"] == 1
    assert result["msg"] == "runtime API endpoint 'localhost' is neither a socket path nor HOST:PORT"


def test_state_or_weight_is_required(run_module):
    result = run_module(haproxy_server, {"runtime_api": ["/x.sock"], "name": "n1"})
    assert result["exit_code"] == 1
    assert result["msg"] == "one of the following is required: state, weight"
