"""tco_report.yml on the lab after load: the tokens it reports from the lab's Prometheus match what the load generator
was told it used, and its HTML renders in headless Chromium to a page that is not blank.

The lab's AI nodes serve clients without a token meter; this module puts llm_meter in front of Ollama on every AI
node (Ollama moves to 127.0.0.1:11435, the meter takes the engine's port), as docs/llm_exporter.md describes, with
Prometheus scraping every second so the window's edges cost little. Its teardown switches the meter off again: one
ai_nodes.yml run (the meter stops, then Ollama takes its port back on the node's address), then Prometheus's targets.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import httpx
import pytest
from lab import metering, monitoring
from lab.inventory import LAB_AUTH_HEADERS
from lab.proc import wait_for
from lab.screenshot import find_chromium, png_summary, render_to_png

from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import parse_samples

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama"), pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
FAST_SCRAPES = {"prometheus_scrape_interval": "1s", "prometheus_scrape_timeout": "1s"}
# Steady load over about 90 s: Prometheus's increase() stretches what it saw to the window's edges, at most one
# scrape interval (1 s) at each end, so the window must be long for the 5% to measure the counting, not that.
REQUESTS = 90
WORKERS = 3
SECONDS_BETWEEN_REQUESTS = 3.0
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def metered(deployed, tmp_path_factory):
    lab = deployed
    overlay = metering.write_overlay(tmp_path_factory.mktemp("tco") / "metered.yml", FAST_SCRAPES)
    try:
        metering.switch_on(lab, overlay)
        yield lab, overlay
    finally:
        metering.switch_off(lab)


def metered_tokens(lab):
    """(prompt, generated, newest sample time) summed over every node, as Prometheus holds them now."""
    totals, newest = [], math.inf
    for metric in ("namtech_llm_prompt_tokens_total", "namtech_llm_generated_tokens_total"):
        answer = monitoring.get(monitoring.prometheus_url(lab) + "/api/v1/query", params={"query": metric},
                                timeout=10).json()
        series = answer["data"]["result"]
        if len(series) < len(lab.group("ai_nodes")):
            return None
        totals.append(sum(float(item["value"][1]) for item in series))
        newest = min(newest, *(float(item["value"][0]) for item in series))
    return totals[0], totals[1], newest


def meter_totals(lab):
    """(prompt, generated) tokens as the meters on the AI nodes count them, read from their own /metrics."""
    samples = [sample for node in lab.group("ai_nodes")
               for sample in parse_samples(httpx.get("http://%s:9779/metrics" % lab.hosts[node].address,
                                                     timeout=10).text)]
    return tuple(sum(sample["value"] for sample in samples if sample["name"] == metric)
                 for metric in ("namtech_llm_prompt_tokens_total", "namtech_llm_generated_tokens_total"))


def meters_settled(lab, expected, timeout=15):
    """The meters' totals once they reach ``expected`` (a meter counts an answer as it relays its end), or what they
    hold after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (totals := meter_totals(lab)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return totals


def prometheus_holds(lab, totals):
    """Prometheus's (prompt, generated, newest sample time) when its sums equal ``totals``, else None."""
    now = metered_tokens(lab)
    return now is not None and now[:2] == totals and now


def generate(client, url, index):
    """One generation through the load balancer; its (prompt, generated) token counts as the engine reported them."""
    body = {"model": "assistant", "prompt": "Count to %d, please." % (index % 7 + 1),
            "stream": index % 2 == 0, "options": {"num_predict": 4 + index % 9}}
    with client.stream("POST", url + "/api/generate", json=body) as answer:
        answer.raise_for_status()
        final = [json.loads(line) for line in answer.iter_lines() if line.strip()][-1]
    assert final["done"] is True
    return final["prompt_eval_count"], final["eval_count"]


def send_load(url, requests, workers=WORKERS, pace=0.0):
    """``requests`` generations from ``workers`` threads, each starting one every ``pace`` seconds at most."""
    counted = {"prompt": 0, "generated": 0, "requests": 0}
    lock = threading.Lock()
    started = time.monotonic()

    def work(indexes):
        with httpx.Client(headers=LAB_AUTH_HEADERS, timeout=60) as client:
            for turn, index in enumerate(indexes):
                time.sleep(max(0.0, started + turn * pace - time.monotonic()))
                prompt, generated = generate(client, url, index)
                with lock:
                    counted["prompt"] += prompt
                    counted["generated"] += generated
                    counted["requests"] += 1

    threads = [threading.Thread(target=work, args=(range(worker, requests, workers),)) for worker in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counted


@pytest.fixture(scope="module")
def report(metered, tmp_path_factory):
    lab, overlay = metered
    url = "http://%s:11434" % (lab.topology.vip or lab.hosts[lab.group("loadbalancers")[0]].address)
    # Before the window: a few requests make every series move, and Prometheus has caught up with the meters and
    # kept a few flat samples (the window's start is then not extrapolated from a slope).
    send_load(url, 3, workers=1)
    before = meter_totals(lab)
    caught_up = wait_for(lambda: prometheus_holds(lab, before), timeout=60)
    wait_for(lambda: prometheus_holds(lab, before) and metered_tokens(lab)[2] > caught_up[2] + 2, timeout=60)
    started = time.time()
    counted = send_load(url, REQUESTS, pace=SECONDS_BETWEEN_REQUESTS)
    expected = (before[0] + counted["prompt"], before[1] + counted["generated"])
    metered_now = meters_settled(lab, expected)
    settled = wait_for(lambda: prometheus_holds(lab, metered_now), timeout=120)
    wait_for(lambda: metered_tokens(lab)[2] > settled[2] + 3, timeout=60)
    window = "%ds" % math.ceil(time.time() - started + 1)
    report_dir = tmp_path_factory.mktemp("reports")
    lab.run_playbook("playbooks/tco_report.yml", {
        "tco_window": window, "tco_report_dir": str(report_dir),
        "tco_cloud_prices_file": str(REPO / "examples" / "tco" / "cloud_prices.yml")},
        args=["-i", str(overlay)], timeout=600)
    data = json.loads(next(report_dir.glob("tco-*.json")).read_text())
    return {"counted": counted, "window": window, "report": data, "dir": report_dir, "expected": expected,
            "metered": metered_now}


def test_the_meters_counted_exactly_what_the_engines_reported(report):
    assert report["counted"]["requests"] == REQUESTS
    assert report["metered"] == report["expected"]


def test_the_reported_tokens_match_what_the_load_generator_sent_within_5_percent(report):
    in_window = report["report"]["usage"]["in_window"]
    counted = report["counted"]
    print("\nwindow %s: report %s prompt / %s generated tokens in %s requests; the load generator %s / %s in %s"
          % (report["window"], in_window["prompt_tokens"], in_window["generated_tokens"], in_window["requests"],
             counted["prompt"], counted["generated"], counted["requests"]))
    assert report["report"]["usage"]["source"] == "prometheus"
    # Requests too: the load balancers' health checks pass through the meter and must not count.
    for reported, sent in ((in_window["prompt_tokens"], counted["prompt"]),
                           (in_window["generated_tokens"], counted["generated"]),
                           (in_window["requests"], counted["requests"])):
        assert abs(reported - sent) <= TOLERANCE * sent, (reported, sent)


def test_the_report_costs_the_lab_tier_per_million_tokens(report):
    current = report["report"]["tiers"][0]
    assert current["name"] == "current"
    assert current["monthly"]["total"] > 0
    assert current["cost_per_million_tokens"] > 0
    assert report["report"]["cloud_prices"]


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_html_report_renders_in_headless_chromium_to_a_page_that_is_not_blank(report):
    html = next(report["dir"].glob("tco-*.html"))
    summary = png_summary(render_to_png(html, report["dir"] / "report.png"))
    print("\n%s: %d colours, %.1f%% off the background" % (html.name, summary.distinct_colours,
                                                           100 * summary.ink_fraction))
    assert not summary.looks_blank
