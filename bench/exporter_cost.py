"""What llm_exporter costs an AI node: how long a scrape of it takes, and the load its canary puts on the node.

Needs a deployed lab (`make lab-up`, then `ansible-playbook -i inventories/lab playbooks/site.yml`). On one AI node
(the first unless --node), in one run:

(1) Scrapes: --scrapes GETs of llm_exporter's /metrics (:9778) from this machine, alternating with node_exporter's
    (:9100) on the same node: p50, p99 and size of both, and their ratios. Then what Prometheus itself recorded
    over the window of (2): scrape_duration_seconds of both jobs on that node, and the part of llm_exporter's
    scrapes spent asking the engine (its namtech_llm_scrape_duration_seconds).
(2) Load, over --window seconds in which this script sends nothing but a reading at each end: llm_exporter's CPU
    seconds per minute and RSS (its process_* metrics) against node_exporter's on the same node, and the canary's
    requests per minute (namtech_llm_canary_requests_total) against the requests the engine served in the same
    window: its request log in the journal for Ollama (every request, and the inference ones), vLLM's
    vllm:request_success_total. --load-rate adds client generations through the lab's endpoint (Ollama only).

Appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from dataclasses import dataclass

from lab import monitoring
from lab.core import Lab
from lab.inventory import ENGINE_PORTS, ai_endpoint_url
from lab.traffic import Traffic
from report import append_section, percentile

from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import parse_samples

LLM_EXPORTER_PORT = 9778
EXPORTER_SERVICE = "namtech-llm-exporter.service"
EXPORTER_CONFIG = "/etc/namtech/llm_exporter.json"
OLLAMA_SERVICE = "ollama.service"
MIB = 1024 * 1024
# Paths that make the engine compute (generate or embed); the rest are listings, versions and health checks.
INFERENCE_PATHS = {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/v1/chat/completions",
                   "/v1/completions", "/v1/embeddings"}
# The request log lines of the lab engine (key=value) and of Ollama itself (gin).
REQUEST_LOG_LINES = (re.compile(r'msg="request" method=(?P<method>\S+) path=(?P<path>\S+)'),
                     re.compile(r'^\[GIN\] .*\|\s*(?P<method>[A-Z]+)\s+"(?P<path>[^"]+)"'))


# -- pure helpers ------------------------------------------------------------------------------------------------

def metric_sum(samples, name, **labels):
    """The sum of the samples of ``name`` whose labels include ``labels`` (0.0 when there is none)."""
    return sum(sample["value"] for sample in samples
               if sample["name"] == name and all(sample["labels"].get(key) == value for key, value in labels.items()))


def engine_requests(log_text):
    """(inference requests, all requests) in an engine's request log."""
    inference = total = 0
    for line in log_text.splitlines():
        match = next((found for pattern in REQUEST_LOG_LINES if (found := pattern.search(line))), None)
        if match is None:
            continue
        total += 1
        inference += match.group("path").split("?", 1)[0] in INFERENCE_PATHS
    return inference, total


def per_minute(count, seconds):
    return count * 60.0 / seconds


def ratio(numerator, denominator):
    return "n/a" if numerator is None or not denominator else "%.2f" % (numerator / denominator)


def milliseconds(seconds):
    return "n/a" if seconds is None else "%.2f" % (seconds * 1000)


# -- (1) scrapes from this machine -------------------------------------------------------------------------------

def timed_get(client, url):
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.text


def time_scrapes(urls, scrapes):
    """{name: (seconds of each scrape, body bytes, samples)}: the targets alternated, so both see the same noise."""
    durations = {name: [] for name in urls}
    # One kept-alive connection per target, as Prometheus scrapes, with Prometheus's login.
    with monitoring.client(monitoring.SCRAPE_LOGIN, timeout=30) as client:
        bodies = {name: timed_get(client, url)[1] for name, url in urls.items()}
        for _round in range(scrapes):
            for name, url in urls.items():
                durations[name].append(timed_get(client, url)[0])
    return {name: (durations[name], len(bodies[name].encode()), len(parse_samples(bodies[name]))) for name in urls}


# -- (2) the window ----------------------------------------------------------------------------------------------

def exporter_reading(client, url):
    samples = parse_samples(client.get(url).raise_for_status().text)
    return {"cpu": metric_sum(samples, "process_cpu_seconds_total"),
            "rss": metric_sum(samples, "process_resident_memory_bytes"),
            "canary": metric_sum(samples, "namtech_llm_canary_requests_total")}


def vllm_finished(client, url):
    return metric_sum(parse_samples(client.get(url).raise_for_status().text), "vllm:request_success_total")


@dataclass(frozen=True)
class Window:
    """Both exporters' readings at each end, the engine's (inference, all) requests in between, Unix times."""

    before: dict
    after: dict
    served: tuple
    started: float
    ended: float

    @property
    def seconds(self):
        return self.ended - self.started

    def per_minute(self, exporter, reading):
        return per_minute(self.after[exporter][reading] - self.before[exporter][reading], self.seconds)


def measure_window(lab, node, urls, window, load_rate):
    engine = lab.topology.engine
    vllm_url = "http://%s:%d/metrics" % (lab.hosts[node].address, ENGINE_PORTS["vllm"])
    load = Traffic(ai_endpoint_url(lab.topology), "generate", rate=load_rate) if load_rate else \
        contextlib.nullcontext()
    with monitoring.client(monitoring.SCRAPE_LOGIN, timeout=30) as client:
        before = {name: exporter_reading(client, url) for name, url in urls.items()}
        finished_before = vllm_finished(client, vllm_url) if engine == "vllm" else None
        started = time.time()
        with load:
            time.sleep(window)  # the window itself: the node runs undisturbed by this script
        ended = time.time()
        after = {name: exporter_reading(client, url) for name, url in urls.items()}
        finished = vllm_finished(client, vllm_url) - finished_before if engine == "vllm" else None
    if engine == "vllm":
        served = (finished, None)
    else:
        log = lab.ssh(node, ["journalctl", "-u", OLLAMA_SERVICE, "--since", "@%.3f" % started, "--until",
                             "@%.3f" % ended, "-o", "cat", "--no-pager"]).stdout
        served = engine_requests(log)
    return Window(before, after, served, started, ended)


def exporter_settings(lab, node):
    config = json.loads(lab.ssh(node, ["cat", EXPORTER_CONFIG]).stdout)
    memory_max = lab.ssh(node, ["systemctl", "show", "-p", "MemoryMax", "--value", EXPORTER_SERVICE]).stdout.strip()
    return config, int(memory_max) if memory_max.isdigit() else None


# -- what Prometheus recorded ------------------------------------------------------------------------------------

def prometheus_value(prometheus, expression, at):
    """The single value of an instant query at ``at`` (Unix time), or None when it has no series."""
    answer = monitoring.get(prometheus + "/api/v1/query", params={"query": expression, "time": "%.3f" % at},
                            timeout=30).json()
    if answer.get("status") != "success":
        raise SystemExit("Prometheus refused %r: %s" % (expression, answer.get("error")))
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def prometheus_scrapes(prometheus, node, ended, window):
    """{job: (p50, p99, scrapes)} of scrape_duration_seconds over the window, and the exporter's engine time."""
    figures = {}
    for job in ("llm_exporter", "node"):
        series = 'scrape_duration_seconds{job="%s",node="%s"}[%ds]' % (job, node, round(window))
        figures[job] = tuple(prometheus_value(prometheus, expression % series, ended)
                             for expression in ("quantile_over_time(0.5, %s)", "quantile_over_time(0.99, %s)",
                                                "count_over_time(%s)"))
    engine_part = prometheus_value(prometheus, 'avg_over_time(namtech_llm_scrape_duration_seconds{node="%s"}[%ds])'
                                   % (node, round(window)), ended)
    return figures, engine_part


# -- the report --------------------------------------------------------------------------------------------------

def scrape_rows(node, scraped, recorded, engine_part, args):
    rows = ["| scrape of /metrics on %s, from this machine | p50 ms | p99 ms | bytes | samples |" % node,
            "| --- | ---: | ---: | ---: | ---: |"]
    for name, (durations, size, samples) in scraped.items():
        rows.append("| %s | %s | %s | %d | %d |" % (name, milliseconds(percentile(durations, 0.5)),
                                                    milliseconds(percentile(durations, 0.99)), size, samples))
    llm, llm_size = scraped["llm_exporter"][:2]
    plain, plain_size = scraped["node_exporter"][:2]
    comparison = (ratio(percentile(llm, 0.5), percentile(plain, 0.5)),
                  ratio(percentile(llm, 0.99), percentile(plain, 0.99)), ratio(llm_size, plain_size), args.scrapes)
    rows += ["", "Ratio llm_exporter / node_exporter: p50 %s, p99 %s, bytes %s (%d scrapes each, alternated, "
             "one kept-alive connection each)." % comparison,
             "", "| Prometheus' scrape_duration_seconds over the window | p50 ms | p99 ms | scrapes |",
             "| --- | ---: | ---: | ---: |"]
    for job, (p50, p99, count) in recorded.items():
        scrapes = "n/a" if count is None else "%d" % count
        rows.append("| job %s | %s | %s | %s |" % (job, milliseconds(p50), milliseconds(p99), scrapes))
    rows += ["", "Ratio llm_exporter / node: p50 %s, p99 %s. Of an llm_exporter scrape, its requests to the engine "
             "took %s ms on average (namtech_llm_scrape_duration_seconds)."
             % (ratio(recorded["llm_exporter"][0], recorded["node"][0]),
                ratio(recorded["llm_exporter"][1], recorded["node"][1]), milliseconds(engine_part))]
    return rows


def load_rows(window, config, memory_max, engine):
    def cpu(name):
        return window.per_minute(name, "cpu")

    after = window.after
    canary = window.per_minute("llm_exporter", "canary")
    inference, total = (None if count is None else per_minute(count, window.seconds) for count in window.served)
    canary_label = "canary every %gs" % config["canary_interval_seconds"] if config.get("canary_enabled") \
        else "canary off"
    rows = ["| process over %.0f s | CPU s per minute | share of one core | RSS MiB |" % window.seconds,
            "| --- | ---: | ---: | ---: |"]
    for name, label in (("llm_exporter", "llm_exporter (%s)" % canary_label), ("node_exporter", "node_exporter")):
        rows.append("| %s | %.3f | %.4f | %.1f |" % (label, cpu(name), cpu(name) / 60, after[name]["rss"] / MIB))
    rows += ["", "Ratio llm_exporter / node_exporter: CPU %s, RSS %s; llm_exporter's RSS / its MemoryMax: %s."
             % (ratio(cpu("llm_exporter"), cpu("node_exporter")),
                ratio(after["llm_exporter"]["rss"], after["node_exporter"]["rss"]),
                ratio(after["llm_exporter"]["rss"], memory_max)),
             "", "| requests per minute, same window | value |", "| --- | ---: |",
             "| canary (namtech_llm_canary_requests_total) | %.2f |" % canary]
    if engine == "vllm":
        rows.append("| engine: finished requests (vllm:request_success_total) | %.2f |" % inference)
        rows += ["", "Canary / engine's finished requests: %s." % ratio(canary, inference)]
    else:
        rows += ["| engine: inference requests (its request log) | %.2f |" % inference,
                 "| engine: every request (health checks, the exporter's listings too) | %.2f |" % total,
                 "", "Canary / engine's inference requests: %s; canary / every request: %s."
                 % (ratio(canary, inference), ratio(canary, total))]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200, help="GETs of each /metrics (default 200)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the load is measured over (default 60)")
    parser.add_argument("--node", help="the AI node to measure (default: the first)")
    parser.add_argument("--load-rate", type=float, default=0.0,
                        help="client generations per second through the lab's endpoint during the window (Ollama "
                             "only; default 0: an idle node)")
    args = parser.parse_args(argv)
    if args.scrapes < 1 or args.window <= 0 or args.load_rate < 0:
        parser.error("--scrapes must be at least 1, --window above 0 and --load-rate not negative")
    lab = Lab.current()
    if lab is None or not lab.group("ai_nodes") or not lab.group("monitoring"):
        print("needs a running lab with site.yml deployed: make lab-up, then ansible-playbook -i inventories/lab "
              "playbooks/site.yml", file=sys.stderr)
        return 2
    if args.load_rate and lab.topology.engine != "ollama":
        print("--load-rate sends Ollama generations: use it on an Ollama lab", file=sys.stderr)
        return 2
    node = args.node or lab.group("ai_nodes")[0]
    address = lab.hosts[node].address
    urls = {"llm_exporter": "http://%s:%d/metrics" % (address, LLM_EXPORTER_PORT),
            "node_exporter": monitoring.node_exporter_url(lab, node) + "/metrics"}
    prometheus = monitoring.prometheus_url(lab)
    config, memory_max = exporter_settings(lab, node)
    scraped = time_scrapes(urls, args.scrapes)
    window = measure_window(lab, node, urls, args.window, args.load_rate)
    recorded, engine_part = prometheus_scrapes(prometheus, node, window.ended, args.window)
    rows = scrape_rows(node, scraped, recorded, engine_part, args)
    rows += ["", *load_rows(window, config, memory_max, lab.topology.engine)]
    rows += ["", "%s lab, %s engine, node %s; client load during the window: %s. llm_exporter's CPU includes "
             "Prometheus' scrapes of it in the window and this script's two readings."
             % (lab.topology.name, lab.topology.engine, node,
                "%g generations per second through %s" % (args.load_rate, ai_endpoint_url(lab.topology))
                if args.load_rate else "none")]
    options = "--scrapes %d --window %g" % (args.scrapes, args.window)
    options += " --node %s" % args.node if args.node else ""
    options += " --load-rate %g" % args.load_rate if args.load_rate else ""
    command = "make bench-exporter-cost (bench/exporter_cost.py %s)" % options
    append_section("llm_exporter cost: scrape duration and the canary's load", command, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
