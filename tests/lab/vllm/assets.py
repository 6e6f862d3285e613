"""Publish the vLLM wheelhouse and model archives in the artifact tree (hard links into the cache: no copy)."""

import os
import shutil
from pathlib import Path

from lab.vllm.models import ensure_models
from lab.vllm.wheelhouse import ensure_wheelhouse


def add_to_tree(tree: Path, log=print) -> Path:
    """Build what is missing, then place ``wheels/`` and ``models/`` under ``tree``; return ``tree``."""
    wheelhouse = ensure_wheelhouse(log)
    link_tree(wheelhouse / "wheels", tree / "wheels")
    link_tree(ensure_models(wheelhouse, log), tree / "models")
    return tree


def link_tree(source: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            link_or_copy(path, dest / path.name)


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem (LAB_VLLM_CACHE elsewhere)
        shutil.copy2(source, dest)
