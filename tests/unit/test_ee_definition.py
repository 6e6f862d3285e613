"""The execution environment definition (extensions/ee/execution-environment.yml): ansible-builder accepts it and
writes a build context that installs the collection from the tarball `make build` makes, with the Python and system
requirements the collection's own meta/execution-environment.yml names. Nothing is built: no image, no network."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("ansible_builder", reason="ansible-builder is not installed (requirements/dev.in)")

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DEFINITION = REPO / "extensions" / "ee" / "execution-environment.yml"


def run(*command, cwd=REPO):
    finished = subprocess.run([str(arg) for arg in command], cwd=cwd, capture_output=True, text=True, timeout=300,
                              check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def load_yaml(path):
    return yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8"))


def requirement_lines(path):
    lines = (line.split("#", 1)[0].strip() for line in (REPO / path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def definition():
    return load_yaml(DEFINITION)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection tarball, built as `make build` builds it."""
    output = tmp_path_factory.mktemp("build")
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", output)
    (built,) = output.glob("namtech-internal_ai-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def context(tmp_path_factory, tarball):
    """`ansible-builder create` run on the definition, laid out as in the repository: extensions/ee/ beside .build/."""
    root = tmp_path_factory.mktemp("checkout")
    (root / "extensions" / "ee").mkdir(parents=True)
    shutil.copy(DEFINITION, root / "extensions" / "ee" / DEFINITION.name)
    (root / ".build").mkdir()
    shutil.copy(tarball, root / ".build" / tarball.name)
    output = run(BIN / "ansible-builder", "create", "-f", root / "extensions" / "ee" / DEFINITION.name,
                 "-c", root / "context", cwd=root)
    return root / "context", output


def test_the_definition_is_ansible_builder_version_3(definition):
    assert definition["version"] == 3
    assert definition["images"]["base_image"]["name"]


def test_ansible_core_is_the_series_the_collection_is_tested_with(definition):
    (tested,) = [line for line in requirement_lines("requirements/dev.in") if line.startswith("ansible-core")]
    assert definition["dependencies"]["ansible_core"]["package_pip"] == tested


def test_the_collection_comes_from_the_tarball_of_the_version_in_galaxy_yml(definition):
    version = load_yaml(REPO / "galaxy.yml")["version"]
    name = "namtech-internal_ai-%s.tar.gz" % version
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": "collections/%s" % name, "type": "file"}]
    assert definition["additional_build_files"] == [{"src": "../../.build/%s" % name, "dest": "collections"}]


def test_ansible_builder_creates_a_context_that_installs_the_built_tarball(context, tarball):
    directory, output = context
    assert "No matches" not in output
    copied = directory / "_build" / "collections" / tarball.name
    assert copied.read_bytes() == tarball.read_bytes()
    requirements = load_yaml(directory / "_build" / "requirements.yml")
    assert requirements == {"collections": [{"name": "collections/%s" % tarball.name, "type": "file"}]}
    containerfile = (directory / "Containerfile").read_text(encoding="utf-8")
    assert re.search(r"ansible-galaxy collection install .*-r requirements\.yml", containerfile)
    # The builder stage reads every installed collection's meta/execution-environment.yml.
    assert "introspect.py introspect" in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner>=2.4,<3"' in containerfile


def test_the_image_gets_an_ssh_client_for_the_managed_hosts(context):
    directory = context[0]
    assert "openssh-clients [platform:rpm]" in (directory / "_build" / "bindep.txt").read_text(encoding="utf-8")


def test_the_builder_takes_the_requirements_from_the_collections_own_meta(tmp_path, tarball):
    collections = tmp_path / "collections"
    run(BIN / "ansible-galaxy", "collection", "install", "--force", "--collections-path", collections, tarball)
    meta = load_yaml(REPO / "meta" / "execution-environment.yml")
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    found = yaml.safe_load(run(BIN / "ansible-builder", "introspect", collections))
    python = [line.split("#", 1)[0].strip() for line in found["python"]]
    assert python == requirement_lines("meta/ee-requirements.txt")
    assert all(line.endswith("# from collection namtech.internal_ai") for line in found["python"])
    assert [line.split("#", 1)[0].strip() for line in found["system"]] == requirement_lines("meta/ee-bindep.txt")
