"""What the load balancers let through on the lab: API keys, limits, the path allow-list, the body limit, TLS.

The lab inventory gives HAProxy two keys (tests/lab/inventory.py): `lab` without limits and `limited`
(30 requests a minute, 2 at a time).
"""

from __future__ import annotations

import ssl

import httpx
import pytest
from lab.inventory import LAB_API_KEYS, LAB_CA_PATH

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]


def bearer(team):
    return {"Authorization": "Bearer " + LAB_API_KEYS[team]}


@pytest.fixture(scope="module")
def endpoint(deployed):
    lab = deployed
    return lab.topology.vip or lab.hosts[lab.group("loadbalancers")[0]].address


def test_no_key_or_a_wrong_key_is_refused_and_a_valid_key_is_served(endpoint):
    url = f"http://{endpoint}:11434/api/tags"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-key"}, timeout=10).status_code == 401
    answer = httpx.get(url, headers=bearer("lab"), timeout=10)
    assert answer.status_code == 200
    assert "models" in answer.json()


def test_a_key_over_its_rate_gets_429(endpoint):
    with httpx.Client(timeout=10, headers=bearer("limited")) as client:
        codes = [client.get(f"http://{endpoint}:11434/api/version").status_code for _request in range(40)]
    assert codes.count(429) >= 10
    assert codes[0] == 200
    assert set(codes) <= {200, 429}


@pytest.mark.parametrize("method,path", [("POST", "/api/pull"), ("DELETE", "/api/delete"), ("POST", "/api/copy"),
                                         ("POST", "/api/create"), ("POST", "/api/push"), ("GET", "/metrics")])
def test_model_management_and_unlisted_paths_are_not_reachable(endpoint, method, path):
    answer = httpx.request(method, f"http://{endpoint}:11434{path}", headers=bearer("lab"),
                           json={"model": "lab-chat:v1"}, timeout=10)
    assert answer.status_code in (403, 404), (path, answer.status_code)


def test_a_10_mb_body_gets_413(endpoint):
    answer = httpx.post(f"http://{endpoint}:11434/api/generate", headers=bearer("lab"),
                        content=b"x" * (10 * 1024 * 1024), timeout=30)
    assert answer.status_code == 413


def test_tls_with_the_lab_ca_serves_and_plain_clients_without_the_ca_refuse(endpoint):
    verified = ssl.create_default_context(cafile=str(LAB_CA_PATH))
    answer = httpx.get(f"https://{endpoint}/api/tags", headers=bearer("lab"), verify=verified, timeout=10)
    assert answer.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{endpoint}/api/tags", headers=bearer("lab"), timeout=10)


# ---- the AI nodes' firewall (firewall role, applied by site.yml) ----------------------------------------------

GUARDED_PORTS = {"engine": 11434, "node_exporter": 9100, "llm_exporter": 9778}


def port_answers(lab, source, address, port):
    """Whether a TCP connection from lab host ``source`` to address:port is accepted."""
    probe = "timeout 5 bash -c '</dev/tcp/%s/%d'" % (address, port)
    return lab.ssh(source, probe, check=False, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def firewalled(deployed):
    lab = deployed
    node = lab.group("ai_nodes")[0]
    trusted = set(lab.group("loadbalancers")) | set(lab.group("monitoring"))
    outsiders = [name for name in lab.group("storage") + lab.group("ai_nodes")[1:] + lab.group("artifacts")
                 if name not in trusted]
    return lab, lab.hosts[node].address, outsiders[0]


@pytest.mark.parametrize("port_name", sorted(GUARDED_PORTS))
def test_guarded_ports_refuse_a_host_that_is_neither_load_balancer_nor_monitoring(firewalled, port_name):
    lab, address, outsider = firewalled
    assert not port_answers(lab, outsider, address, GUARDED_PORTS[port_name]), (outsider, port_name)


def test_the_load_balancer_reaches_the_engine_and_monitoring_the_exporters(firewalled):
    lab, address, _outsider = firewalled
    balancer, monitor = lab.group("loadbalancers")[0], lab.group("monitoring")[0]
    assert port_answers(lab, balancer, address, GUARDED_PORTS["engine"])
    assert not port_answers(lab, balancer, address, GUARDED_PORTS["llm_exporter"])
    assert all(port_answers(lab, monitor, address, port) for port in GUARDED_PORTS.values())


def test_ssh_and_unguarded_ports_stay_open_to_everyone(firewalled):
    lab, address, outsider = firewalled
    assert port_answers(lab, outsider, address, 22)
