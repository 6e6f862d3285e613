"""The artifact host: a stdlib HTTP server under systemd serving the lab's registry and release archives."""

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from lab import podman
from lab.proc import wait_until

PORT = 8080
REMOTE_ROOT = "/srv/artifacts"
REMOTE_SERVER = "/opt/nti-lab/artifact_server.py"
UNIT_NAME = "nti-lab-artifacts.service"
STAMP = "/etc/nti-lab-artifacts.sha256"
SERVER_SCRIPT = Path(__file__).resolve().parent / "artifacts" / "server.py"
# Engine releases served under releases/v<version>/: the ollama role's upgrade and rollback tests switch between
# them; the last one is the default (releases/ollama-linux-amd64.tgz) and the inventory's ollama_version.
ENGINE_VERSIONS = ("0.12.5-lab", "0.12.6-lab")


# --- Integration point with lab.artifacts (built in parallel) -----------------------------------------
# This is the only place that tolerates the artifact builder or server not existing yet: it then serves a
# placeholder tree with Python's http.server. Once both exist this function uses them and nothing else changes.
def build_artifacts(dest: Path) -> tuple[Path, Path | None]:
    """Return (tree to serve, server script or None for the http.server fallback)."""
    try:
        from lab.artifacts.build import build_artifact_tree  # noqa: PLC0415 - optional until it exists
    except ModuleNotFoundError as exc:
        if exc.name not in ("lab.artifacts", "lab.artifacts.build"):
            raise
        tree = placeholder_tree(dest)
    else:
        tree = build_artifact_tree(dest, engine_versions=ENGINE_VERSIONS)
    return tree, SERVER_SCRIPT if SERVER_SCRIPT.is_file() else None


def placeholder_tree(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "lab-placeholder.txt").write_text("nti-lab artifact host: lab.artifacts.build not available yet\n")
    return dest
# ---------------------------------------------------------------------------------------------------------


def unit_text(server: Path | None) -> str:
    if server is None:
        command = f"/usr/bin/python3 -m http.server {PORT} --bind 0.0.0.0 --directory {REMOTE_ROOT}"
    else:
        command = f"/usr/bin/python3 {REMOTE_SERVER} --root {REMOTE_ROOT} --bind 0.0.0.0 --port {PORT}"
    return (
        "[Unit]\nDescription=nti lab artifact and model registry server\nAfter=network.target\n\n"
        f"[Service]\nExecStart={command}\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def content_hash(tree: Path, server: Path | None) -> str:
    digest = hashlib.sha256(unit_text(server).encode())
    if server is not None:
        digest.update(server.read_bytes())
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def add_engine_artifacts(tree: Path, engine: str, log=print) -> None:
    """What one engine's lab needs beside the common tree: vLLM's wheelhouse and model archives (large, so only
    for a vllm lab; built once on this machine and cached, see lab.vllm)."""
    if engine == "vllm":
        from lab.vllm.assets import add_to_tree  # noqa: PLC0415 - only a vllm lab pays for importing it

        add_to_tree(tree, log)


def deploy(container: str, address: str, build_dir: Path, log=print, engine: str = "ollama") -> bool:
    """Copy the tree and server in and (re)start the unit, only when they differ; return whether anything changed."""
    shutil.rmtree(build_dir, ignore_errors=True)
    tree, server = build_artifacts(build_dir)
    add_engine_artifacts(tree, engine, log)
    wanted = content_hash(tree, server)
    current = podman.exec_in(container, "cat", STAMP, check=False).stdout.strip()
    if current == wanted and unit_active(container):
        return False
    log(f"deploying the artifact tree to {container} ({'placeholder http.server' if server is None else 'server.py'})")
    install(container, tree, server)
    podman.exec_in(container, "sh", "-c", f"echo {wanted} > {STAMP}")
    wait_until(lambda: answers_http(address), deadline_s=30, what=f"artifact server on {address}:{PORT}")
    return True


def install(container: str, tree: Path, server: Path | None) -> None:
    podman.exec_in(container, "rm", "-rf", REMOTE_ROOT)
    podman.exec_in(container, "mkdir", "-p", REMOTE_ROOT, str(Path(REMOTE_SERVER).parent))
    podman.copy_into(container, f"{tree}/.", REMOTE_ROOT)
    if server is not None:
        podman.copy_into(container, str(server), REMOTE_SERVER)
    podman.exec_in(container, "tee", f"/etc/systemd/system/{UNIT_NAME}", input_text=unit_text(server))
    podman.exec_in(container, "systemctl", "daemon-reload")
    podman.exec_in(container, "systemctl", "enable", UNIT_NAME)
    podman.exec_in(container, "systemctl", "restart", UNIT_NAME)


def unit_active(container: str) -> bool:
    return podman.exec_in(container, "systemctl", "is-active", UNIT_NAME, check=False).returncode == 0


def answers_http(address: str) -> bool:
    return answers_http_url(f"{url(address)}/")


def answers_http_url(address_url: str) -> bool:
    try:
        with urllib.request.urlopen(address_url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def url(address: str) -> str:
    return f"http://{address}:{PORT}"
