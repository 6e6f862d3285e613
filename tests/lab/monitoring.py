"""The lab's monitoring behind basic auth and TLS: its CA and certificate, its login, and clients that use them.

Prometheus, Alertmanager and node_exporter on every lab host serve HTTPS with one certificate that names every lab
address (a production site issues one per host) and ask for a login. The CA and the certificate are made once per
lab with openssl, next to the generated inventory, which reads them with lookups.
"""

import ssl
import subprocess
from pathlib import Path

import httpx

from lab.paths import INVENTORY_DIR

TLS_DIR = INVENTORY_DIR / "monitoring-tls"
CA_PATH = TLS_DIR / "ca.pem"
CERTIFICATE_PATH = TLS_DIR / "server.pem"
KEY_PATH = TLS_DIR / "server.key"
NAMES_PATH = TLS_DIR / "names.txt"
# Stand-ins for vault secrets: the login Prometheus scrapes with, and the one people and tests use.
SCRAPE_LOGIN = ("prometheus", "lab-scrape-pass-7d41c9e2")
LOGIN = ("lab", "lab-monitoring-pass-3a9f52b8")
PROMETHEUS_PORT, ALERTMANAGER_PORT, NODE_EXPORTER_PORT = 9090, 9093, 9100


def ensure_tls(addresses: list[str]) -> bool:
    """The CA and a certificate for every address, made again when the addresses change; whether anything changed."""
    names = "\n".join(sorted(addresses)) + "\n"
    if NAMES_PATH.is_file() and NAMES_PATH.read_text() == names and KEY_PATH.is_file():
        return False
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    if not CA_PATH.is_file():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256", "-days", "3650",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=nti lab monitoring CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key")
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=nti lab monitoring", "-out", "server.csr")
    (TLS_DIR / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=" + ",".join(f"IP:{address}" for address in sorted(addresses)) + "\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "825", "-sha256", "-extfile", "server.ext", "-out", "server.pem")
    NAMES_PATH.write_text(names)
    return True


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], cwd=TLS_DIR, check=True, capture_output=True, timeout=60)


def inventory_vars() -> dict:
    """The roles' settings that turn the login and TLS on, and give every client of Prometheus what it needs."""
    def read(path: Path) -> str:
        return "{{ lookup('ansible.builtin.file', '%s') }}" % path

    tls = {"tls_certificate": read(CERTIFICATE_PATH), "tls_private_key": read(KEY_PATH),
           "tls_ca_certificate": read(CA_PATH)}
    settings = {}
    for role, users in (("node_exporter", [SCRAPE_LOGIN]), ("prometheus", [LOGIN, SCRAPE_LOGIN]),
                        ("alertmanager", [LOGIN, SCRAPE_LOGIN])):
        settings[f"{role}_web_users"] = dict(users)
        settings.update({f"{role}_web_{name}": value for name, value in tls.items()})
    settings.update({
        "prometheus_scrape_basic_auth": {"username": SCRAPE_LOGIN[0], "password": SCRAPE_LOGIN[1]},
        "prometheus_scrape_tls_ca_certificate": read(CA_PATH),
        "grafana_prometheus_username": LOGIN[0], "grafana_prometheus_password": LOGIN[1],
        "grafana_prometheus_ca_certificate": read(CA_PATH),
        "rollout_gate_prometheus_username": LOGIN[0], "rollout_gate_prometheus_password": LOGIN[1],
        "rollout_gate_prometheus_ca_path": str(CA_PATH),
        "tco_prometheus_username": LOGIN[0], "tco_prometheus_password": LOGIN[1],
        "tco_prometheus_ca_path": str(CA_PATH),
    })
    return settings


def client(login: tuple[str, str] = LOGIN, timeout: float = 10) -> httpx.Client:
    """An HTTP client that logs in to the lab's monitoring and trusts its CA; node_exporter takes SCRAPE_LOGIN only."""
    return httpx.Client(auth=login, verify=ssl.create_default_context(cafile=str(CA_PATH)), timeout=timeout)


def prometheus_url(lab) -> str:
    return f"https://{lab.hosts[lab.group('monitoring')[0]].address}:{PROMETHEUS_PORT}"


def alertmanager_url(lab) -> str:
    return f"https://{lab.hosts[lab.group('monitoring')[0]].address}:{ALERTMANAGER_PORT}"


def node_exporter_url(lab, host: str) -> str:
    return f"https://{lab.hosts[host].address}:{NODE_EXPORTER_PORT}"


def node_metrics(lab, host: str) -> str:
    """A node_exporter's /metrics text, fetched with Prometheus's login."""
    with client(SCRAPE_LOGIN) as http:
        answer = http.get(node_exporter_url(lab, host) + "/metrics")
        answer.raise_for_status()
        return answer.text


def get(url: str, **kwargs) -> httpx.Response:
    """GET from the lab's monitoring with the login and CA."""
    with client() as http:
        return http.get(url, **kwargs)


def post(url: str, **kwargs) -> httpx.Response:
    """POST to the lab's monitoring with the login and CA."""
    with client() as http:
        return http.post(url, **kwargs)
