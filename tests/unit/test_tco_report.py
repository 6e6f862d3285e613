"""tco_report against a Prometheus-shaped server on loopback, run in-process; and playbooks/tco_report.yml run by
ansible-playbook against an inventory with the same figures."""

from __future__ import annotations

import base64
import errno
import json
import os
import pathlib
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from loopback import free_port, json_answer, send_json

from ansible_collections.namtech.internal_ai.plugins.module_utils import tco
from ansible_collections.namtech.internal_ai.plugins.modules import tco_report

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
PLAYBOOK = REPO / "playbooks" / "tco_report.yml"
EXAMPLE_PRICES = REPO / "examples" / "tco" / "cloud_prices.yml"
END = "2026-07-01T00:00:00Z"
END_SECONDS = 1782864000.0

# Seven days of Prometheus data: ai1 and ai2 serve "assistant"; ai1's RAPL package reads 40 W; ai2 has no power
# sensor and was 30 % busy; mon1 has neither a sensor nor an idle figure.
PROMETHEUS_ANSWERS = {
    "vllm:prompt_tokens_total": [({"model": "assistant", "node": "ai1"}, 10e6), ({"model": "assistant", "node": "ai2"},
                                                                                 4e6)],
    "vllm:generation_tokens_total": [({"model": "assistant", "node": "ai1"}, 3.5e6)],
    "vllm:request_success_total": [({"model": "assistant", "node": "ai1"}, 7000)],
    "node_rapl_package_joules_total": [({"node": "ai1"}, 40.0)],
    "node_cpu_seconds_total": [({"node": "ai2"}, 0.3), ({"node": "mon1"}, 0.5)],
    "prometheus_tsdb_lowest_timestamp_seconds": [({}, END_SECONDS - 90 * 86400)],
}


def prometheus_answer(answers):
    """GET /api/v1/query: the vector of the first entry of ``answers`` whose key is in the query, else no data."""

    def answer(handler):
        params = parse_qs(urlsplit(handler.path).query)
        query, at = params["query"][0], float(params["time"][0])
        samples = next((samples for fragment, samples in answers.items() if fragment in query), [])
        send_json(handler, 200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": labels, "value": [at, str(value)]} for labels, value in samples]}})

    return answer


@pytest.fixture
def prometheus(server):
    return server.route("GET", "/api/v1/query", prometheus_answer(PROMETHEUS_ANSWERS))


def ai_node(name):
    return {"name": name, "group": "ai_nodes", "tco_hardware_price": 3600, "tco_amortisation_months": 36,
            "tco_power_idle_watts": 20, "tco_power_load_watts": 120, "tco_maintenance_hours_per_month": 2}


HOSTS = [ai_node("ai1"), ai_node("ai2"),
         {"name": "mon1", "group": "monitoring", "hardware_price": 600, "amortisation_months": 48,
          "power_load_watts": 15}]
LARGE_USD = {"provider": "cloudA", "model": "large", "input_price_per_million": 2.5, "output_price_per_million": 10,
             "currency": "USD"}


def module_args(url=None, **overrides):
    args = {"currency": "EUR", "exchange_rates": {"USD": 0.9}, "electricity_price_per_kwh": 0.3, "pue": 1.2,
            "maintenance_hourly_rate": 60, "fixed_costs_per_month": [{"name": "rack", "amount": 50}],
            "hosts": HOSTS, "cloud_prices": [LARGE_USD], "window": "7d", "end": END}
    if url:
        args["url"] = url
    args.update(overrides)
    return args


def queries_asked(server):
    return [parse_qs(urlsplit(request["path"]).query)["query"][0] for request in server.requests]


# -- from Prometheus ----------------------------------------------------------------------------------------

def test_the_tier_measured_by_prometheus_hand_computed(prometheus, run_module):
    result = run_module(tco_report, module_args(prometheus.url))
    assert result["exit_code"] == 0, result
    assert result["changed"] is False and "files" not in result
    report = result["report"]
    usage = report["usage"]
    # 17.5 M tokens in 7 days x 30.44 / 7 = 76.1 M a month (60.88 M prompt, 15.22 M generated).
    assert usage["monthly"] == pytest.approx({"prompt_tokens": 60.88e6, "generated_tokens": 15.22e6,
                                              "total_tokens": 76.1e6, "requests": 30440.0})
    assert usage["in_window"] == {"prompt_tokens": 14e6, "generated_tokens": 3.5e6, "requests": 7000.0}
    assert usage["window"]["start"] == "2026-06-24T00:00:00Z" and usage["window"]["low_confidence"] is False
    tier = report["tiers"][0]
    assert tier["tier"] == "pro"  # two AI nodes, no load balancer
    power = {host["name"]: (host["power"]["watts"], host["power"]["source"]) for host in tier["hosts"]}
    # ai1 measured 40 W; ai2 20 + 0.3 x 100 = 50 W; mon1 has no idle figure: its 15 W under load.
    assert power == {"ai1": (40.0, "measured"), "ai2": (50.0, "interpolated"), "mon1": (15.0, "load_watts")}
    # Power: (40 + 50 + 15) W x 1.2 x 730.56 h / 1000 x 0.30 EUR = 10.520064 + 13.15008 + 3.945024 = 27.615168.
    # Amortisation 100 + 100 + 600 / 48 = 212.5; maintenance 2 x 2 h x 60 = 240; the rack 50.
    assert tier["monthly"] == pytest.approx({"amortisation": 212.5, "power": 27.615168, "maintenance": 240.0,
                                             "fixed": 50.0, "total": 530.115168})
    # 530.115168 / 76.1 M = 6.966034 EUR per million tokens.
    assert tier["cost_per_million_tokens"] == pytest.approx(6.966034, abs=1e-6)
    # Power above idle: (40 - 20) + (50 - 20) W = 13.15008 EUR over 76.1 M tokens = 0.1728 per million.
    assert tier["line"] == pytest.approx({"fixed_per_month": 516.965088, "variable_per_million_tokens": 0.1728})
    comparison = tier["comparisons"][0]
    # 60.88 M x 2.25 + 15.22 M x 9 = 273.96 EUR; blended at 80 % input: 0.8 x 2.25 + 0.2 x 9 = 3.6 EUR.
    assert comparison["monthly_cost_at_usage"] == pytest.approx(273.96)
    assert comparison["cheaper_at_usage"] == "cloud"
    # 516.965088 / (3.6 - 0.1728) x 1e6 = 150,841,820.7 tokens a month.
    assert comparison["break_even_tokens_per_month"] == pytest.approx(150841820.728, rel=1e-9)
    per_host = {host["name"]: host["tokens_per_month"] for host in tier["hosts"]}
    assert per_host == pytest.approx({"ai1": 58.705714e6, "ai2": 17.394286e6, "mon1": 0.0})
    assert result["summary"][1] == ("pro tier (current): 530 EUR per month (amortisation 40.1 %, power 5.2 %, "
                                    "maintenance 45.3 %, support and fixed costs 9.4 %); 6.97 EUR per million tokens.")


def test_the_queries_use_the_window_and_the_end(prometheus, run_module):
    result = run_module(tco_report, module_args(prometheus.url, window="36h"))
    asked = queries_asked(prometheus)
    assert asked[0] == "min(prometheus_tsdb_lowest_timestamp_seconds)"
    assert asked[1].startswith("sum by (model, node) (label_replace(increase(vllm:prompt_tokens_total[36h]), ")
    assert asked[1].endswith("or increase(namtech_llm_prompt_tokens_total[36h]))")
    assert asked[4:] == ["sum by (node) (rate(node_rapl_package_joules_total[36h]))",
                         "sum by (node) (rate(node_rapl_dram_joules_total[36h]))",
                         "sum by (node) (avg_over_time(namtech_gpu_power_watts[36h]))",
                         '1 - avg by (node) (rate(node_cpu_seconds_total{mode="idle"}[36h]))']
    times = {parse_qs(urlsplit(request["path"]).query)["time"][0] for request in prometheus.requests}
    assert times == {"1782864000.000"}
    power_queries = result["report"]["source"]["queries"]["power"]
    assert power_queries[0] == "sum by (node) (rate(node_rapl_package_joules_total[$window]))"


def test_queries_can_be_replaced(server, run_module):
    server.route("GET", "/api/v1/query", prometheus_answer({
        "my_prompt": [({"model": "m", "node": "ai1"}, 1e6)],
        "macmon_watts": [({"node": "ai1"}, 12.0)],
    }))
    result = run_module(tco_report, module_args(server.url, prompt_tokens_query="sum(my_prompt[$window])",
                                                power_queries=["avg_over_time(macmon_watts[$window])"],
                                                utilisation_query="", coverage_query=""))
    assert result["exit_code"] == 0, result
    assert queries_asked(server)[0] == "sum(my_prompt[7d])"
    assert len(server.requests) == 4  # three usage queries and one power query
    assert result["report"]["tiers"][0]["hosts"][0]["power"]["watts"] == 12.0


def test_usage_given_by_hand_still_measures_power(prometheus, run_module):
    usage = [{"model": "assistant", "prompt_tokens": 60e6, "generated_tokens": 20e6}]
    result = run_module(tco_report, module_args(prometheus.url, usage=usage))
    assert result["report"]["usage"]["source"] == "given"
    assert result["report"]["usage"]["monthly"]["total_tokens"] == 80e6
    assert not [query for query in queries_asked(prometheus) if "tokens" in query]
    assert result["report"]["tiers"][0]["hosts"][0]["power"]["source"] == "measured"


def test_a_short_window_is_flagged(prometheus, run_module):
    result = run_module(tco_report, module_args(prometheus.url, window="6h"))
    assert "low confidence: the usage was measured over 6.0 hours, less than a day, and extrapolated to a month" \
        in result["report"]["warnings"]
    assert result["report"]["usage"]["window"]["low_confidence"] is True


def test_a_prometheus_error_fails_with_its_message(server, run_module):
    server.route("GET", "/api/v1/query", json_answer(
        {"status": "error", "errorType": "bad_data", "error": "1:14: parse error: unexpected \"}\""}, status=400))
    result = run_module(tco_report, module_args(server.url, coverage_query=""))
    assert result["exit_code"] == 1 and result["failed"] is True
    assert result["msg"].startswith("GET %s/api/v1/query?query=" % server.url)
    assert result["msg"].endswith(" returned HTTP 400: 1:14: parse error: unexpected \"}\"")
    assert result["status"] == 400


def test_an_answer_that_is_not_a_query_result_fails(server, run_module):
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    server.route("GET", "/api/v1/query", json_answer(matrix))
    result = run_module(tco_report, module_args(server.url, coverage_query=""))
    assert result["exit_code"] == 1
    assert result["msg"].endswith("expected an instant vector, got result type 'matrix'; the query must return one "
                                  "value per series at one time")


def test_unreachable_prometheus(run_module):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(tco_report, module_args(url, retries=0))
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/v1/query: cannot connect (" % url)
    assert result["msg"].endswith(") after 1 attempt. Check that the service runs and listens on this address and "
                                  "that no firewall blocks it")


# -- by hand, and bad input ---------------------------------------------------------------------------------

HAND_USAGE = [{"model": "assistant", "prompt_tokens": 60e6, "generated_tokens": 20e6, "requests": 90000,
               "node": "ai1"}]


def test_usage_by_hand_without_prometheus(run_module):
    result = run_module(tco_report, module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")]))
    assert result["exit_code"] == 0, result
    tier = result["report"]["tiers"][0]
    # Without a measurement ai1 draws its 120 W under load: 120 x 1.2 x 730.56 / 1000 x 0.3 = 31.560192 EUR;
    # 100 amortisation + 120 maintenance + 50 rack: 301.560192 EUR.
    assert tier["monthly"]["total"] == pytest.approx(301.560192)
    assert result["report"]["source"] == {"prometheus_url": None, "usage_from": "given"}


def test_zero_usage(run_module):
    result = run_module(tco_report, module_args(usage=[], hosts=[ai_node("ai1")]))
    assert result["exit_code"] == 0, result
    assert result["report"]["tiers"][0]["cost_per_million_tokens"] is None
    assert result["report"]["tiers"][0]["comparisons"][0]["break_even_tokens_per_month"] is not None
    assert result["report"]["warnings"] == ["no tokens were served: the cost per million tokens is n/a and the "
                                            "break-even uses an input share of 0.75"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({}, "give url (the Prometheus API, to measure usage) or usage (tokens per month by hand, an empty list for none)"),
    ({"usage": HAND_USAGE, "hosts": [dict(ai_node("ai1"), tco_hardware_price=None)]},
     "hosts[0] (ai1).hardware_price is missing (inventory variable tco_hardware_price): give the purchase price (0 for "
     "a host that is paid off)"),
    ({"usage": HAND_USAGE, "hosts": [dict(ai_node("ai1"), tco_power_idle_watts=-1)]},
     "hosts[0] (ai1).power_idle_watts must be 0 or more watts, got -1"),
    ({"usage": HAND_USAGE, "compare_models": ["gpt-9"]},
     "compare_models: 'gpt-9' is not in cloud_prices (it has: cloudA/large); add a row for it or fix the name"),
    ({"usage": HAND_USAGE, "exchange_rates": {}},
     "cloud_prices[0] (cloudA/large).input_price_per_million is in USD but the report is in EUR and exchange_rates has "
     "no rate for USD: add USD: <EUR for 1 USD> to exchange_rates (inventory variable tco_exchange_rates)"),
    ({"usage": HAND_USAGE, "cloud_prices": [dict(LARGE_USD, currency=None)]},
     "cloud_prices[0] (cloudA/large).currency is missing: every cloud price needs its input and output price per "
     "million tokens and their currency"),
    ({"usage": HAND_USAGE, "hosts": []}, "hosts is empty: give every host of the tier with its cost inputs"),
    ({"usage": HAND_USAGE, "window": "a week"},
     "window must be a Prometheus duration such as 30d, 7d, 36h or 1d12h, got 'a week'"),
    ({"usage": HAND_USAGE, "electricity_price_per_kwh": None},
     "hosts[0] (ai1).electricity_price_per_kwh is missing (inventory variable tco_electricity_price_per_kwh): give the "
     "price of a kWh site-wide (group_vars/all) or for the host"),
])
def test_bad_input_fails_naming_the_field(run_module, overrides, message):
    result = run_module(tco_report, module_args(**overrides))
    assert result["exit_code"] == 1 and result["failed"] is True
    assert result["msg"] == message


def test_the_report_currency_may_differ_from_the_prices(run_module):
    result = run_module(tco_report, module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], report_currency="USD",
                                                exchange_rates={"EUR": 1.25}))
    # 301.560192 EUR x 1.25 = 376.95024 USD.
    assert result["report"]["currency"] == "USD"
    assert result["report"]["tiers"][0]["monthly"]["total"] == pytest.approx(376.95024)


PLANNED_INVENTORY = {
    "_meta": {"hostvars": dict(
        [("ai%d" % number, {"tco_hardware_price": 3600, "tco_amortisation_months": 36, "tco_power_idle_watts": 20,
                            "tco_power_load_watts": 120, "tco_maintenance_hours_per_month": 2})
         for number in (1, 2, 3)]
        + [("lb%d" % number, {"tco_hardware_price": 960, "tco_amortisation_months": 48, "tco_power_load_watts": 25})
           for number in (1, 2)])},
    "all": {"children": ["ungrouped", "ai_nodes", "loadbalancers"]},
    "ai_nodes": {"hosts": ["ai1", "ai2", "ai3"]},
    "loadbalancers": {"hosts": ["lb1", "lb2"]},
}


def test_a_planned_tier_from_its_inventory(run_module):
    result = run_module(tco_report, module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")],
                                                planned={"inventory": PLANNED_INVENTORY}))
    assert result["exit_code"] == 0, result
    planned = result["report"]["tiers"][1]
    assert (planned["name"], planned["tier"], len(planned["hosts"])) == ("planned", "cluster", 5)
    # Nothing measured: every host at its load watts. AI node: 100 + 31.560192 + 120; LB: 20 + 6.57504.
    # 3 x 251.560192 + 2 x 26.57504 + 50 = 857.830656 EUR.
    assert planned["monthly"]["total"] == pytest.approx(857.830656)


def test_a_planned_inventory_with_templates_is_refused(run_module):
    inventory = json.loads(json.dumps(PLANNED_INVENTORY))
    inventory["_meta"]["hostvars"]["lb2"]["tco_hardware_price"] = "{{ lb_price }}"
    result = run_module(tco_report, module_args(usage=HAND_USAGE, planned={"inventory": inventory}))
    assert result["msg"] == ("planned.hosts[4] (lb2).hardware_price is an untemplated Jinja expression "
                             "('{{ lb_price }}'): give a literal number there")


# -- report files -------------------------------------------------------------------------------------------

def test_writes_the_three_files_and_is_idempotent(tmp_path, run_module):
    args = module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], report_dir=str(tmp_path / "reports"))
    first = run_module(tco_report, args)
    assert first["exit_code"] == 0 and first["changed"] is True
    names = ["tco-2026-07-01.json", "tco-2026-07-01.md", "tco-2026-07-01.html"]
    assert first["files"] == [str(tmp_path / "reports" / name) for name in names]
    written = json.loads((tmp_path / "reports" / names[0]).read_text())
    assert written == first["report"]
    assert (tmp_path / "reports" / names[1]).read_text().startswith("# Total cost of ownership: box tier, 2026-07-01")
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == sorted(names)  # no temporary left
    contents = {name: (tmp_path / "reports" / name).read_bytes() for name in names}

    second = run_module(tco_report, args)
    assert second["changed"] is False
    assert second["report"]["generated_at"] == first["report"]["generated_at"]
    assert {name: (tmp_path / "reports" / name).read_bytes() for name in names} == contents


def test_a_changed_input_rewrites_the_files_with_a_diff(tmp_path, run_module):
    args = module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], report_dir=str(tmp_path))
    run_module(tco_report, args)
    before = (tmp_path / "tco-2026-07-01.md").read_text()
    args["electricity_price_per_kwh"] = 0.4
    args["_ansible_diff"] = True
    result = run_module(tco_report, args)
    assert result["changed"] is True
    assert result["diff"]["before"] == before
    assert result["diff"]["after"] == (tmp_path / "tco-2026-07-01.md").read_text() != before


def test_check_mode_computes_and_writes_nothing(tmp_path, run_module):
    directory = tmp_path / "reports"
    result = run_module(tco_report, module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], report_dir=str(directory)),
                        check_mode=True)
    assert result["exit_code"] == 0 and result["changed"] is True
    assert result["report"]["tiers"][0]["monthly"]["total"] == pytest.approx(301.560192)
    assert not directory.exists()


def test_an_unwritable_report_dir_fails_clearly(tmp_path, run_module):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_module(tco_report, module_args(usage=HAND_USAGE, report_dir=str(blocker / "reports")))
    assert result["exit_code"] == 1
    assert result["msg"].startswith("cannot create report_dir %s: " % (blocker / "reports"))
    assert result["msg"].endswith(". Give a directory the controller user can write")


def test_a_report_that_cannot_be_written_leaves_the_previous_files(tmp_path, run_module, monkeypatch):
    def disk_full(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    args = module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], report_dir=str(tmp_path))
    run_module(tco_report, args)
    previous = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    monkeypatch.setattr(os, "fsync", disk_full)
    args["electricity_price_per_kwh"] = 0.4
    result = run_module(tco_report, args)
    assert (result["exit_code"], result["msg"]) == (1, "cannot write the report %s: [Errno 28] No space left on "
                                                       "device. Check that report_dir is writable"
                                                    % (tmp_path / "tco-2026-07-01.json"))
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == previous  # and no temporary file


# -- the playbook -------------------------------------------------------------------------------------------

def ansible_env(tmp_path):
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_HOST_KEY_CHECKING="False",
                PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))


def run_playbook(tmp_path, *args):
    return subprocess.run([str(BIN / "ansible-playbook"), str(PLAYBOOK), *args], cwd=tmp_path,
                          env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)


def test_the_playbook_passes_syntax_check(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    result = run_playbook(tmp_path, "-i", "hosts.yml", "--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr


def write_inventories(tmp_path, prometheus_port):
    current = {"all": {
        "vars": {"tco_currency": "EUR", "tco_exchange_rates": {"USD": 0.9}, "tco_electricity_price_per_kwh": 0.3,
                 "tco_pue": 1.2, "tco_maintenance_hourly_rate": 60,
                 "tco_fixed_costs_per_month": [{"name": "rack", "amount": 50}], "tco_end": END,
                 "tco_compare_models": ["gpt-4o-mini"]},
        "children": {
            "ai_nodes": {"vars": {"tco_hardware_price": 3600, "tco_amortisation_months": 36,
                                  "tco_power_idle_watts": 20, "tco_power_load_watts": 120,
                                  "tco_maintenance_hours_per_month": 2},
                         "hosts": {"ai1": {"ansible_host": "127.0.0.2"}, "ai2": {"ansible_host": "127.0.0.3"}}},
            "monitoring": {"hosts": {"mon1": {"ansible_host": "127.0.0.4", "prometheus_address": "127.0.0.1",
                                              "prometheus_port": prometheus_port, "tco_hardware_price": 600,
                                              "tco_amortisation_months": 48, "tco_power_load_watts": 15}}},
            "artifacts": {"hosts": {"artifacts1": {"tco_hardware_price": "ignored: not a costed group"}}},
        }}}
    planned = {"all": {"children": {
        "ai_nodes": {"vars": {"tco_hardware_price": 3600, "tco_amortisation_months": 36, "tco_power_idle_watts": 20,
                              "tco_power_load_watts": 120, "tco_maintenance_hours_per_month": 2},
                     "hosts": {"ai1": None, "ai2": None, "ai3": None}},
        "loadbalancers": {"vars": {"tco_hardware_price": 960, "tco_amortisation_months": 48,
                                   "tco_power_load_watts": 25},
                          "hosts": {"lb1": None, "lb2": None}},
    }}}
    (tmp_path / "current.yml").write_text(yaml.safe_dump(current))
    (tmp_path / "planned.yml").write_text(yaml.safe_dump(planned))


def test_the_playbook_reports_from_the_inventory_prometheus_and_a_planned_inventory(tmp_path, prometheus):
    port = int(prometheus.url.rsplit(":", 1)[1])
    write_inventories(tmp_path, port)
    result = run_playbook(tmp_path, "-i", "current.yml", "-e", "tco_planned_inventory=planned.yml",
                          "-e", "tco_cloud_prices_file=%s" % EXAMPLE_PRICES, "-e", "tco_report_dir=out")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "tco-2026-07-01.json").read_text())
    current, planned = report["tiers"]
    # The same tier as test_the_tier_measured_by_prometheus_hand_computed: 530.115168 EUR a month.
    assert current["monthly"]["total"] == pytest.approx(530.115168)
    assert [host["name"] for host in current["hosts"]] == ["ai1", "ai2", "mon1"]
    # Planned: ai1 and ai2's measured work spread over three nodes, the load balancers at their load watts.
    assert (planned["tier"], len(planned["hosts"])) == ("cluster", 5)
    assert [row["model"] for row in report["cloud_prices"]] == ["gpt-4o-mini"]
    assert report["assumptions"]["prices_read_on"].startswith("not read: illustrative prices")
    assert (tmp_path / "out" / "tco-2026-07-01.html").read_text().startswith("<!DOCTYPE html>")
    assert "pro tier (current): 530 EUR per month" in result.stdout
    assert "Report: %s/out/tco-2026-07-01.json" % tmp_path in result.stdout

    again = run_playbook(tmp_path, "-i", "current.yml", "-e", "tco_planned_inventory=planned.yml",
                         "-e", "tco_cloud_prices_file=%s" % EXAMPLE_PRICES, "-e", "tco_report_dir=out")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout


def test_the_playbook_logs_in_to_prometheus_and_never_shows_the_password(tmp_path, server):
    login = "Basic " + base64.b64encode(b"prometheus:tco-s3cret-pw").decode()
    answer = prometheus_answer(PROMETHEUS_ANSWERS)

    def behind_basic_auth(handler):
        if handler.headers.get("Authorization") != login:
            send_json(handler, 401, {"status": "error", "error": "Unauthorized"})
            return
        answer(handler)

    server.route("GET", "/api/v1/query", behind_basic_auth)
    write_inventories(tmp_path, int(server.url.rsplit(":", 1)[1]))
    current = yaml.safe_load((tmp_path / "current.yml").read_text())
    # Site-wide, as a site sets them in group_vars/all: every host sees them, none reports them as a cost input.
    current["all"]["vars"].update(tco_prometheus_username="prometheus", tco_prometheus_password="tco-s3cret-pw")
    (tmp_path / "current.yml").write_text(yaml.safe_dump(current))
    result = run_playbook(tmp_path, "-i", "current.yml", "-v", "-e", "tco_report_dir=out",
                          "-e", "tco_cloud_prices_file=%s" % EXAMPLE_PRICES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {request["headers"].get("Authorization") for request in server.requests} == {login}
    assert "pro tier (current): 530 EUR per month" in result.stdout
    assert "tco-s3cret-pw" not in result.stdout + result.stderr
    assert "tco-s3cret-pw" not in (tmp_path / "out" / "tco-2026-07-01.json").read_text()


def test_the_playbook_in_check_mode_writes_nothing(tmp_path, prometheus):
    write_inventories(tmp_path, int(prometheus.url.rsplit(":", 1)[1]))
    result = run_playbook(tmp_path, "-i", "current.yml", "--check", "-e", "tco_report_dir=out",
                          "-e", "tco_planned_inventory=planned.yml", "-e", "tco_cloud_prices_file=%s" % EXAMPLE_PRICES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(check mode: not written)" in result.stdout
    assert not (tmp_path / "out").exists()


def test_the_playbook_names_a_cloud_model_missing_from_the_prices(tmp_path, prometheus):
    write_inventories(tmp_path, int(prometheus.url.rsplit(":", 1)[1]))
    result = run_playbook(tmp_path, "-i", "current.yml", "-e", "tco_report_dir=out")
    assert result.returncode == 2
    assert "compare_models: 'gpt-4o-mini' is not in cloud_prices (it has: none); add a row for it or fix the name" \
        in result.stdout


def test_every_variable_the_playbook_reads_is_documented_and_known_to_the_module():
    read = set(re.findall(r"\b(tco_[a-z_]+)\b", PLAYBOOK.read_text())) - {"tco_report"}
    documented = set(re.findall(r"`(tco_[a-z_]+)`", (REPO / "docs" / "tco.md").read_text()))
    assert read - documented == set()
    known = {"tco_" + field for field in tco.HOST_FIELDS + tco.SITE_FIELDS}
    assert read - known == set()
    assert {"tco_" + field for field in tco.HOST_FIELDS} - documented == set()
