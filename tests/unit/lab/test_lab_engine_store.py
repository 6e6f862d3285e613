"""Aliases, re-pulls and blob housekeeping: the store and the runners keyed by weights."""

from __future__ import annotations

import json
import urllib.request

import ollama
from lab.artifacts.build import build_artifact_tree
from lab.artifacts.models import MODELS
from lab.artifacts.server import ArtifactServer


def blob_names(engine) -> set[str]:
    return {path.name for path in (engine.engine.config.models_dir / "blobs").iterdir()}


def test_an_alias_of_a_loaded_model_is_already_loaded(chat_client):
    chat_client.copy("lab-chat:v1", "lab-chat:prod")
    chat_client.generate("lab-chat:v1", "hello")
    assert chat_client.generate("lab-chat:prod", "hello").load_duration < 0.05e9
    assert [model.model for model in chat_client.ps().models] == ["lab-chat:v1"]


def test_repointing_an_alias_loads_the_new_weights(client):
    client.pull("lab-chat:v1")
    client.pull("lab-chat:v2")
    client.copy("lab-chat:v1", "lab-chat:prod")
    client.generate("lab-chat:prod", "hello")

    client.copy("lab-chat:v2", "lab-chat:prod")
    repointed = client.generate("lab-chat:prod", "hello")
    assert repointed.load_duration >= 0.2e9  # lab-chat:v2 loads in 0.2 s
    v2_digest = next(model.digest for model in client.list().models if model.model == "lab-chat:v2")
    assert v2_digest in {model.digest for model in client.ps().models}


def test_re_pull_of_a_changed_tag_prunes_the_old_weights(tmp_path, start_engine):
    tree = build_artifact_tree(tmp_path / "tree", models=MODELS[:1])
    with ArtifactServer(tree, "127.0.0.1", 0, echo=False) as registry:
        engine = start_engine(registry_url=registry.url)
        client = ollama.Client(host=engine.url, timeout=30)
        client.pull("lab-chat:v1")
        old_weights = json.loads((tree / "v2/library/lab-chat/manifests/v1").read_bytes())["layers"][0]["digest"]

        build_artifact_tree(tree, models=MODELS[:1], weights_scale=0.5)  # the registry now has new v1 weights
        client.pull("lab-chat:v1")
        new_weights = json.loads((tree / "v2/library/lab-chat/manifests/v1").read_bytes())["layers"][0]["digest"]

    assert new_weights != old_weights
    assert new_weights.replace(":", "-") in blob_names(engine)
    assert old_weights.replace(":", "-") not in blob_names(engine)


def test_blobs_of_a_pull_in_progress_survive_a_delete(chat_client, engine):
    store = engine.engine.store
    stored = store.get(engine.engine.parse_name("lab-chat:v1"))
    license_digest = stored.layers[-1]["digest"]
    with store.pinned([license_digest]):
        chat_client.delete("lab-chat:v1")
        assert store.has_blob(license_digest)
    assert not any(name.endswith("partial") for name in blob_names(engine))


def test_chunked_request_bodies_are_read(chat_client, engine):
    body = iter([b'{"model": ', b'"lab-chat:v1"}'])
    request = urllib.request.Request(engine.url + "/api/show", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["capabilities"] == ["completion"]
