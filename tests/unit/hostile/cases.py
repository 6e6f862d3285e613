"""For each module: arguments that work (the baseline an example mutates), and how many examples it gets."""

from __future__ import annotations

import json
import shutil
from typing import NamedTuple

from hypothesis import strategies as st

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import subprocess_runner
from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.run import BackupJob, run_backup
from ansible_collections.namtech.internal_ai.plugins.modules import (
    ai_backup,
    ai_restore,
    haproxy_server,
    llm_eval,
    llm_health,
    model_release,
    ollama_info,
    ollama_model,
    openai_info,
    tco_report,
)
from hostile.payloads import DIGEST, OTHER_DIGEST


def make_backup_set(directory):
    """One real backup (a directory and config files), made once, for ai_restore to restore and ai_backup to list
    and prune."""
    chroma = directory / "node" / "chroma"
    (chroma / "segments").mkdir(parents=True)
    (chroma / "chroma.sqlite3").write_bytes(b"sqlite" * 100)
    (chroma / "segments" / "header.bin").write_bytes(b"header")
    etc = directory / "node" / "etc" / "namtech"
    etc.mkdir(parents=True)
    (etc / "system.txt").write_text("You are the support assistant.\n")
    backups = directory / "backups"
    run_backup(BackupJob(name="node1", host="node1", destination={"path": str(backups)}, compression="gzip",
                         sources=[{"type": "directory", "name": "chroma", "path": str(chroma)},
                                  {"type": "config", "name": "config", "paths": [str(etc)]}],
                         split_size_mb=1, work_dir=str(directory), run_command=subprocess_runner))
    return backups


def connection(url):
    return {"url": url, "retries": 0, "connect_timeout": 2.0, "timeout": 5.0}


def pick_url(world, draw):
    """The plausible server about half of the time: it lets the module go further than garbage does."""
    urls = world.servers.urls
    return draw(st.sampled_from([urls[0]] * (len(urls) - 1) + urls[1:]), label="url")


def ollama_info_args(sandbox, world, draw):
    return connection(pick_url(world, draw))


def openai_info_args(sandbox, world, draw):
    return dict(connection(pick_url(world, draw)), gather=["health", "version", "models", "metrics"])


def ollama_model_args(sandbox, world, draw):
    return dict(connection(pick_url(world, draw)), name="lab-chat:v1", digest="sha256:" + DIGEST, alias="assistant2",
                warm=True, keep_alive="5m")


def llm_health_args(sandbox, world, draw):
    return dict(connection(pick_url(world, draw)), model="lab-chat:v1", expected_digest=DIGEST, probes=1, max_tokens=4,
                max_seconds=10, prometheus_url=pick_url(world, draw),
                prometheus_checks=[{"name": "up", "query": "up", "op": ">=", "value": 1}])


SUITE = """
name: hostile
defaults: {repetitions: 1, concurrency: 1, warmup: 0, timeout: 5}
cases:
  - id: capital
    prompt: What is the capital of France?
    checks: [{contains: Paris}]
"""


def llm_eval_args(sandbox, world, draw):
    suite = sandbox.inside / "suite.yml"
    suite.write_text(SUITE)
    return dict(connection(pick_url(world, draw)), suite=str(suite), model="lab-chat:v1", repetitions=1,
                concurrency=1, min_score=0.5, report_dir=sandbox.path("reports"))


def tco_inputs(report_dir):
    """Cost inputs for one host, with the usage given by hand."""
    return {"currency": "EUR", "exchange_rates": {"USD": 0.9}, "electricity_price_per_kwh": 0.3, "pue": 1.2,
            "maintenance_hourly_rate": 60, "fixed_costs_per_month": [{"name": "rack", "amount": 50}],
            "hosts": [{"name": "ai1", "group": "ai_nodes", "tco_hardware_price": 3600, "tco_amortisation_months": 36,
                       "tco_power_idle_watts": 20, "tco_power_load_watts": 120,
                       "tco_maintenance_hours_per_month": 2}],
            "cloud_prices": [{"provider": "cloudA", "model": "large", "input_price_per_million": 2.5,
                              "output_price_per_million": 10, "currency": "USD"}],
            "usage": [{"model": "large", "prompt_tokens": 1e6, "generated_tokens": 2e5, "requests": 100}],
            "window": "7d", "end": "2026-07-01T00:00:00Z", "report_dir": report_dir}


def tco_report_args(sandbox, world, draw):
    args = tco_inputs(sandbox.path("reports"))
    if draw(st.booleans(), label="usage measured by prometheus"):
        del args["usage"]
        args.update(connection(pick_url(world, draw)))
    return args


def model_release_args(sandbox, world, draw):
    record = sandbox.inside / "releases" / "releases.json"
    record.parent.mkdir()
    entry = {"model": "lab-chat:v1", "digest": DIGEST, "engine": "ollama"}
    record.write_text(json.dumps({"format": 1, "aliases": {"assistant": {
        "current": dict(entry, since="2026-03-01T10:00:00Z", deployed_by="ci"),
        "previous": [dict(entry, model="lab-chat:v0", digest=OTHER_DIGEST, since="2026-02-01T10:00:00Z",
                          until="2026-03-01T10:00:00Z", deployed_by="ci")],
        "candidate": dict(entry, model="lab-chat:v2", digest=OTHER_DIGEST, staged_at="2026-03-02T10:00:00Z",
                          staged_by="ci")}}}))
    return {"path": str(record), "alias": "assistant", "action": "promote", "model": "lab-chat:v3",
            "digest": "c3" * 32, "deployed_by": "ci", "keep_previous": 2}


def haproxy_server_args(sandbox, world, draw):
    endpoint = draw(st.sampled_from(world.servers.haproxy_endpoints), label="runtime_api")
    return {"runtime_api": [endpoint], "name": "n1", "backends": ["ai_ollama"], "state": "drain", "weight": 10,
            "wait": True, "wait_timeout": 2, "wait_interval": 0.1, "timeout": 2}


def make_node(sandbox):
    chroma = sandbox.inside / "node" / "chroma"
    chroma.mkdir(parents=True)
    (chroma / "data.bin").write_bytes(b"vectors" * 50)
    etc = sandbox.inside / "node" / "etc"
    etc.mkdir()
    (etc / "prompt.txt").write_text("system prompt\n")
    (etc / "editor.swp").write_text("swap\n")
    return chroma, etc


def ai_backup_args(sandbox, world, draw):
    chroma, etc = make_node(sandbox)
    shutil.copytree(world.backups, sandbox.path("backups"))
    extra_sources = {
        "none": [],
        "postgres": [{"type": "postgres", "databases": ["rag"], "host": "127.0.0.1", "user": "backup",
                      "password": "secret"}],
        "qdrant": [{"type": "qdrant", "url": pick_url(world, draw), "api_key": "key", "collections": ["docs"]}],
    }
    return {"name": "node1", "host": "node1",
            "sources": [{"type": "directory", "name": "chroma", "path": str(chroma), "exclude": ["*.tmp"],
                         "stop_services": ["chroma"]},
                        {"type": "config", "paths": [str(etc), str(etc / "*.txt")], "exclude": ["*.swp"],
                         "ignore_missing": True},
                        *extra_sources[draw(st.sampled_from(sorted(extra_sources)), label="extra source")]],
            "destination": {"path": sandbox.path("backups")}, "split_size_mb": 1, "compression": "gzip",
            "retention": {"keep_last": 1}, "metrics_dir": sandbox.path("metrics"), "work_dir": sandbox.path("work"),
            "engine_url": pick_url(world, draw)}


def ai_restore_args(sandbox, world, draw):
    shutil.copytree(world.backups, sandbox.path("backups"))
    return {"name": "node1", "backup": "latest", "sources": ["chroma", "config"],
            "destination": {"path": sandbox.path("backups")}, "work_dir": sandbox.path("work"),
            "directory_paths": {"chroma": sandbox.path("restore", "chroma")},
            "config_root": sandbox.path("restore", "root")}


class Case(NamedTuple):
    module: object
    baseline: object  # (sandbox, world, draw) -> arguments that work
    examples: int
    protected: tuple = ()  # options never dropped nor None: their default is a real system path


CASES = {
    "ai_backup": Case(ai_backup, ai_backup_args, 80),
    "ai_restore": Case(ai_restore, ai_restore_args, 80, protected=(("config_root",),)),  # default /
    "haproxy_server": Case(haproxy_server, haproxy_server_args, 60),
    "llm_eval": Case(llm_eval, llm_eval_args, 60),
    "llm_health": Case(llm_health, llm_health_args, 60),
    # default /var/lib/namtech_ai/releases.json
    "model_release": Case(model_release, model_release_args, 80, protected=(("path",),)),
    "ollama_info": Case(ollama_info, ollama_info_args, 50),
    "ollama_model": Case(ollama_model, ollama_model_args, 60),
    "openai_info": Case(openai_info, openai_info_args, 50),
    "tco_report": Case(tco_report, tco_report_args, 80),
}
