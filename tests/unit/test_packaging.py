"""The collection builds into a tarball that installs, and its module documentation renders."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
MODULES = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py"))


def run(*command, cwd=REPO, env=None):
    finished = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the tarball and install it into an empty collections path."""
    work = tmp_path_factory.mktemp("galaxy")
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(work))
    tarballs = list(work.glob("namtech-internal_ai-*.tar.gz"))
    assert len(tarballs) == 1
    collections = work / "collections"
    # --force: the checkout itself is on ANSIBLE_COLLECTIONS_PATH and would count as installed already.
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--force", "--collections-path", str(collections),
        str(tarballs[0]))
    assert (collections / "ansible_collections" / "namtech" / "internal_ai" / "plugins" / "modules").is_dir()
    return tarballs[0], collections


def test_the_tarball_ships_the_collection_and_not_the_test_lab(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"MANIFEST.json", "meta/runtime.yml", "plugins/modules/ollama_info.py", "README.md"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/", ".venv", ".build", ".lab"))]


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module_from_the_installed_collection(installed, module):
    collections = installed[1]
    env = {"ANSIBLE_COLLECTIONS_PATH": str(collections), "PATH": str(BIN), "HOME": str(collections.parent)}
    text = run(str(BIN / "ansible-doc"), "namtech.internal_ai.%s" % module, cwd=collections, env=env)
    assert "namtech.internal_ai.%s" % module in text
    assert "EXAMPLES:" in text and "RETURN VALUES:" in text
