"""Shared by unit and integration tests: make the collection importable as ansible_collections.namtech.internal_ai."""

from __future__ import annotations

import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = REPO / ".build"
COLLECTION_LINK = COLLECTIONS_ROOT / "ansible_collections" / "namtech" / "internal_ai"


def ensure_collection_link():
    """`make` creates this link; a developer running pytest directly gets it here."""
    if not COLLECTION_LINK.exists():
        COLLECTION_LINK.parent.mkdir(parents=True, exist_ok=True)
        COLLECTION_LINK.symlink_to(REPO, target_is_directory=True)
    if str(COLLECTIONS_ROOT) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_ROOT))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS_ROOT))


ensure_collection_link()
