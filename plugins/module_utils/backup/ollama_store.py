# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ollama's model store on disk: ``manifests/<host>/<namespace>/<model>/<tag>`` and ``blobs/sha256-<hex>``.

A manifest is a registry image manifest (JSON) whose ``config`` and ``layers`` name blobs by digest; models
copied under another name share their blobs.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError

DEFAULT_MODELS_DIR = "/usr/share/ollama/.ollama/models"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


def manifest_parts(name):
    """``(host, namespace, model, tag)`` of a model name as ``ollama pull`` takes it."""
    text = (name or "").strip()
    for scheme in ("http://", "https://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
    path, tag = text, DEFAULT_TAG
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = text.rsplit(":", 1)
    pieces = path.split("/")
    if len(pieces) == 1:
        pieces = [DEFAULT_HOST, DEFAULT_NAMESPACE, *pieces]
    elif len(pieces) == 2:
        pieces = [DEFAULT_HOST, *pieces]
    if len(pieces) != 3 or not all(PART.match(piece) for piece in [*pieces, tag]):
        raise BackupError("%r is not an Ollama model name (expected [host/][namespace/]model[:tag], for example "
                          "llama3.2:3b)" % (name,))
    return pieces[0], pieces[1], pieces[2], tag


def display_name(parts):
    host, namespace, model, tag = parts
    if host != DEFAULT_HOST:
        return "%s/%s/%s:%s" % parts
    if namespace != DEFAULT_NAMESPACE:
        return "%s/%s:%s" % (namespace, model, tag)
    return "%s:%s" % (model, tag)


def manifest_relpath(parts):
    return "/".join(("manifests", *tuple(parts)))


def blob_relpath(digest):
    return "blobs/sha256-%s" % DIGEST.match(digest).group(1)


def all_manifest_parts(models_dir):
    """Every model in the store, as ``(host, namespace, model, tag)``, sorted."""
    root = os.path.join(models_dir, "manifests")
    found = []
    for directory, _subdirs, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        pieces = [] if relative == "." else relative.split(os.sep)
        if len(pieces) == 3:
            found.extend((*tuple(pieces), tag) for tag in files if not tag.startswith("."))
    return sorted(found)


def manifest_digests(raw, where):
    """The blob digests a manifest names: its config, then its layers."""
    try:
        manifest = json.loads(raw)
        entries = [manifest.get("config") or {}, *list(manifest.get("layers") or [])]
        digests = [entry["digest"] for entry in entries if entry]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BackupError("%s is not a valid Ollama manifest (%s)" % (where, exc)) from None
    for digest in digests:
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise BackupError("%s names an invalid blob digest %r" % (where, digest))
    return digests
