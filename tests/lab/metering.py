"""llm_meter in front of Ollama on every AI node of the lab, and the cost inputs of the lab's machines: what the TCO
report needs to measure usage (docs/llm_exporter.md, docs/tco.md). The demo and test_tco switch it on with an
inventory layered over the lab's, and off again with the lab inventory alone."""

from __future__ import annotations

import json
from pathlib import Path

from lab.paths import REPO_ROOT

PLAYBOOKS = REPO_ROOT / "playbooks"

# Ollama moves to 127.0.0.1:11435 and the meter takes the engine's port, so every request's tokens reach Prometheus.
METERED = {
    "llm_meter_enabled": True,
    "ollama_listen_address": "127.0.0.1",
    "ollama_port": 11435,
    "llm_meter_upstream_url": "http://127.0.0.1:11435",
    "llm_meter_upstream_host_header": "127.0.0.1:11435",
}
# What a lab machine costs, for the report's monthly figures (example prices).
COSTS = {
    "tco_hardware_price": 4000, "tco_amortisation_months": 36, "tco_power_idle_watts": 60,
    "tco_power_load_watts": 180, "tco_maintenance_hours_per_month": 1,
    "tco_currency": "EUR", "tco_electricity_price_per_kwh": 0.25, "tco_maintenance_hourly_rate": 70,
    "tco_exchange_rates": {"USD": 0.92},  # the example cloud prices are in USD
}


def write_overlay(path: Path, monitoring_vars: dict | None = None) -> Path:
    """The inventory layer: the costs for every host, the meter on the AI nodes, ``monitoring_vars`` on monitoring."""
    children = {"ai_nodes": {"vars": METERED}}
    if monitoring_vars:
        children["monitoring"] = {"vars": monitoring_vars}
    path.write_text(json.dumps({"all": {"vars": COSTS, "children": children}}))
    return path


def monitored_hosts(lab) -> str:
    return ",".join(dict.fromkeys(lab.group("ai_nodes") + lab.group("monitoring")))


def switch_on(lab, overlay: Path) -> None:
    """Ollama moves (ai_nodes.yml), then the meter starts and Prometheus scrapes it (monitoring.yml)."""
    layered = ["-i", str(overlay)]
    lab.run_playbook(PLAYBOOKS / "ai_nodes.yml", args=layered, timeout=1200)
    lab.run_playbook(PLAYBOOKS / "monitoring.yml", args=[*layered, "--limit", monitored_hosts(lab)], timeout=1200)


def switch_off(lab) -> None:
    """As docs/llm_exporter.md says: one ai_nodes.yml run stops the meter and gives Ollama its port back."""
    lab.run_playbook(PLAYBOOKS / "ai_nodes.yml", timeout=1200)
    lab.run_playbook(PLAYBOOKS / "monitoring.yml", args=["--limit", monitored_hosts(lab)], timeout=1200)
