"""Where the vLLM assets are cached: outside the tracked files and kept by `lab down`, keyed by recipe hashes."""

import hashlib
import json
import os
import shutil
from pathlib import Path

from lab.paths import STATE_DIR

# Kept across `lab down` on purpose: the wheelhouse takes minutes and ~1 GB to download.
CACHE_DIR = Path(os.environ.get("LAB_VLLM_CACHE", STATE_DIR / "cache" / "vllm"))
STAMP = ".complete"


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def is_complete(directory: Path, recipe: dict) -> bool:
    stamp = directory / STAMP
    return stamp.is_file() and stamp.read_text() == json.dumps(recipe, sort_keys=True)


def mark_complete(directory: Path, recipe: dict) -> None:
    (directory / STAMP).write_text(json.dumps(recipe, sort_keys=True))


def fresh_dir(directory: Path) -> Path:
    """An empty directory (a build interrupted earlier leaves no half-built asset behind)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
