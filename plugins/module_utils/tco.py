# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The total cost of ownership model: what a tier of hosts costs per month, against a cloud token bill.

Pure Python (no Ansible): the ``tco_report`` module validates its options into the types below, asks
Prometheus through ``measure_usage`` / ``measure_power``, and turns everything into one report dictionary
with ``build_report``. docs/tco.md explains the model; the constants below are its assumptions.

Every amount carries a currency. Amounts are converted into the report currency with the rates the operator
gives (units of the report currency for one unit of the other); an amount in a currency without a rate is
refused with the field that holds it, never guessed.
"""

from __future__ import annotations

import datetime
import math
import re

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import MalformedResponse

DAYS_PER_MONTH = 30.44  # 365.25 / 12, rounded as it is usually quoted
HOURS_PER_MONTH = DAYS_PER_MONTH * 24  # 730.56
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600  # 2,630,016
LOW_CONFIDENCE_SECONDS = 86400  # a usage window shorter than a day misses the daily rhythm of use
DEFAULT_INPUT_SHARE = 0.75
TOKENS_PER_MILLION = 1000000.0
CATEGORIES = ("amortisation", "power", "maintenance", "fixed")
DEFAULT_GROUPS = ("ai_nodes", "loadbalancers", "monitoring", "storage")
REPORT_FORMAT_VERSION = 1

VARIABLE_PREFIX = "tco_"

# The cost inputs a host may carry (inventory variables tco_<name>). The last five override the site's value.
HOST_FIELDS = (
    "hardware_price", "amortisation_months", "currency", "power_idle_watts", "power_load_watts", "power_watts",
    "power_overhead_watts", "maintenance_hours_per_month", "support_per_month",
    "electricity_price_per_kwh", "electricity_currency", "pue", "maintenance_hourly_rate", "maintenance_currency",
)
# Site-wide variables of the playbook: inventory group variables of `all` reach every host's variables,
# so a host's mapping may hold them; they are not host inputs and are skipped without a warning.
SITE_FIELDS = (
    "report_currency", "exchange_rates", "fixed_costs_per_month", "groups", "tier", "window", "end",
    "prometheus_url", "prometheus_api_token", "prometheus_validate_certs", "prometheus_ca_path",
    "prometheus_username", "prometheus_password",
    "prompt_tokens_query", "generated_tokens_query", "requests_query", "power_queries", "utilisation_query",
    "coverage_query", "usage", "default_input_share", "cloud_prices", "cloud_prices_file", "cloud_prices_read_on",
    "compare_models", "planned_inventory", "planned_tier", "planned_fixed_costs_per_month", "report_dir",
)

WINDOW_PLACEHOLDER = "$window"
# Token and request counters differ per engine: vLLM's own (label model_name) and the ones llm_exporter writes
# for Ollama (label model). `or` keeps the series of both (their label sets differ) and the sum adds them per
# model and node.
DEFAULT_PROMPT_TOKENS_QUERY = (
    'sum by (model, node) (label_replace(increase(vllm:prompt_tokens_total[$window]), "model", "$1", '
    '"model_name", "(.+)") or increase(namtech_llm_prompt_tokens_total[$window]))'
)
DEFAULT_GENERATED_TOKENS_QUERY = (
    'sum by (model, node) (label_replace(increase(vllm:generation_tokens_total[$window]), "model", "$1", '
    '"model_name", "(.+)") or increase(namtech_llm_generated_tokens_total[$window]))'
)
# llm_meter counts every request it relays, the load balancers' health checks too: only the answered generations
# and embeddings count here, as vLLM's request_success_total does.
DEFAULT_REQUESTS_QUERY = (
    'sum by (model, node) (label_replace(increase(vllm:request_success_total[$window]), "model", "$1", '
    '"model_name", "(.+)") or increase(namtech_llm_requests_total{code="200", path=~"/api/generate|/api/chat|'
    '/api/embed|/v1/chat/completions|/v1/completions|/v1/embeddings"}[$window]))'
)
# Average watts per node; each query measures another part of the machine and the parts are added: the CPU
# packages and the memory (RAPL, from node_exporter), and the GPUs.
DEFAULT_POWER_QUERIES = (
    "sum by (node) (rate(node_rapl_package_joules_total[$window]))",
    "sum by (node) (rate(node_rapl_dram_joules_total[$window]))",
    "sum by (node) (avg_over_time(namtech_gpu_power_watts[$window]))",
)
DEFAULT_UTILISATION_QUERY = '1 - avg by (node) (rate(node_cpu_seconds_total{mode="idle"}[$window]))'
DEFAULT_COVERAGE_QUERY = "min(prometheus_tsdb_lowest_timestamp_seconds)"

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
# Far above any real price, rate or token count; keeps the products of inputs far from where floats overflow.
MAX_FIGURE = 1e15


class CostInputError(ValueError):
    """A cost input is missing or wrong. ``str(error)`` names the field and says how to fix it."""


# -- reading values -------------------------------------------------------------------------------------------

def variable_hint(field):
    return " (inventory variable %s%s)" % (VARIABLE_PREFIX, field.rsplit(".", 1)[-1].split("[", 1)[0])


def to_number(value, where):
    """A finite float from a number or a numeric string (inventory values may arrive as strings)."""
    if isinstance(value, bool):
        raise CostInputError("%s must be a number, got %r" % (where, value))
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        if "{{" in value or "{%" in value:
            raise CostInputError("%s is an untemplated Jinja expression (%r): give a literal number there"
                                 % (where, value))
        try:
            number = float(value.strip())
        except ValueError:
            raise CostInputError("%s must be a number, got %r" % (where, value)) from None
    else:
        raise CostInputError("%s must be a number, got %r" % (where, value))
    if not math.isfinite(number):
        raise CostInputError("%s must be a finite number, got %r" % (where, value))
    if abs(number) > MAX_FIGURE:
        raise CostInputError("%s must be at most %g in size, got %r" % (where, MAX_FIGURE, value))
    return number


def non_negative(value, where, unit=""):
    number = to_number(value, where)
    if number < 0:
        raise CostInputError("%s must be 0 or more%s, got %s" % (where, unit, _plain(number)))
    return number


def positive(value, where, unit=""):
    number = to_number(value, where)
    if number <= 0:
        raise CostInputError("%s must be more than 0%s, got %s" % (where, unit, _plain(number)))
    return number


def currency_code(value, where):
    if not isinstance(value, str) or not CURRENCY_CODE.match(value.strip().upper()):
        raise CostInputError("%s must be a three-letter ISO 4217 currency code such as EUR, USD or VND, got %r"
                             % (where, value))
    return value.strip().upper()


def _plain(number):
    return ("%d" % number) if float(number).is_integer() else ("%s" % number)


def _given(value):
    return value is not None and value != ""


# -- money ---------------------------------------------------------------------------------------------------

class Money:
    """Converts amounts into the report currency; remembers which rates a report used."""

    def __init__(self, report_currency, exchange_rates=None):
        self.currency = currency_code(report_currency, "report_currency")
        self.rates = {}
        if exchange_rates is not None and not isinstance(exchange_rates, dict):
            raise CostInputError("exchange_rates must be a mapping of currency code to rate, for example "
                                 "{USD: 0.92}, got %r" % (exchange_rates,))
        for code, rate in (exchange_rates or {}).items():
            where = "exchange_rates.%s" % code
            self.rates[currency_code(code, where)] = positive(rate, where, " (%s for 1 %s)" % (self.currency, code))
        self.used = set()

    def convert(self, amount, currency, where):
        if amount == 0 or currency == self.currency:
            return amount
        if currency not in self.rates:
            raise CostInputError(
                "%s is in %s but the report is in %s and exchange_rates has no rate for %s: add %s: <%s for 1 %s> "
                "to exchange_rates (inventory variable tco_exchange_rates)"
                % (where, currency, self.currency, currency, currency, self.currency, currency))
        self.used.add(currency)
        return amount * self.rates[currency]


# -- inputs --------------------------------------------------------------------------------------------------

class Site:
    """The site-wide settings; hosts may override the electricity, PUE and maintenance ones."""

    def __init__(self, currency, *, electricity_price_per_kwh=None, electricity_currency=None, pue=1.0,
                 maintenance_hourly_rate=None, maintenance_currency=None, fixed_costs_per_month=None):
        self.currency = currency_code(currency, "currency")
        self.electricity_price_per_kwh = _optional(non_negative, electricity_price_per_kwh,
                                                   "electricity_price_per_kwh")
        self.electricity_currency = _optional(currency_code, electricity_currency, "electricity_currency")
        self.pue = check_pue(pue, "pue") if _given(pue) else 1.0
        self.maintenance_hourly_rate = _optional(non_negative, maintenance_hourly_rate, "maintenance_hourly_rate")
        self.maintenance_currency = _optional(currency_code, maintenance_currency, "maintenance_currency")
        self.fixed_costs = parse_fixed_costs(fixed_costs_per_month, self.currency, "fixed_costs_per_month")


def _optional(parse, value, where):
    return parse(value, where) if _given(value) else None


def check_pue(value, where):
    number = to_number(value, where)
    if number < 1:
        raise CostInputError("%s (power usage effectiveness) must be 1.0 or more, got %s: it is the facility's "
                             "total power over the IT equipment's power" % (where, _plain(number)))
    return number


def parse_fixed_costs(items, default_currency, where):
    if not items:
        return []
    if not isinstance(items, list):
        raise CostInputError("%s must be a list of {name, amount, currency}, got %r" % (where, items))
    costs = []
    for index, item in enumerate(items):
        item_where = "%s[%d]" % (where, index)
        if not isinstance(item, dict):
            raise CostInputError("%s must be a mapping with name, amount and currency, got %r" % (item_where, item))
        name = item.get("name")
        if not _given(name):
            raise CostInputError("%s.name is missing: say what the cost is (support contract, rack space...)"
                                 % item_where)
        if not _given(item.get("amount")):
            raise CostInputError("%s (%s).amount is missing: give the monthly amount" % (item_where, name))
        costs.append({
            "name": str(name),
            "amount": non_negative(item["amount"], "%s (%s).amount" % (item_where, name)),
            "currency": currency_code(item.get("currency") or default_currency,
                                      "%s (%s).currency" % (item_where, name)),
            "where": "%s (%s).amount" % (item_where, name),
        })
    return costs


class Host:
    """The cost inputs of one host, validated; ``where`` names it in error messages."""

    def __init__(self, name, group, values, where):
        self.name = name
        self.group = group
        self.where = where
        self.values = values

    def field(self, name):
        return "%s.%s" % (self.where, name)

    def get(self, name):
        return self.values.get(name)


def parse_hosts(raw_hosts, label="hosts"):
    """Validate a list of host mappings; returns (hosts, warnings)."""
    if not isinstance(raw_hosts, list):
        raise CostInputError("%s must be a list of host mappings, got %r" % (label, raw_hosts))
    hosts, warnings, seen = [], [], set()
    for index, raw in enumerate(raw_hosts):
        host, unknown = parse_host(raw, index, label)
        if host.name in seen:
            raise CostInputError("%s: %s appears twice; list every host once" % (host.where, host.name))
        seen.add(host.name)
        hosts.append(host)
        warnings.extend("%s: unknown cost input %r ignored (a misspelt variable?); the known ones are %s"
                        % (host.where, key, ", ".join(VARIABLE_PREFIX + field for field in HOST_FIELDS))
                        for key in unknown)
    return hosts, warnings


def parse_host(raw, index, label):
    where = "%s[%d]" % (label, index)
    if not isinstance(raw, dict):
        raise CostInputError("%s must be a mapping of cost inputs, got %r" % (where, raw))
    values, unknown = {}, []
    for key, value in raw.items():
        field = key[len(VARIABLE_PREFIX):] if key.startswith(VARIABLE_PREFIX) else key
        if field in HOST_FIELDS:
            values[field] = value
        elif field not in (*SITE_FIELDS, "name", "group"):
            unknown.append(key)
    name = raw.get("name")
    if not _given(name):
        raise CostInputError("%s.name is missing: every host needs its inventory name" % where)
    where = "%s (%s)" % (where, name)
    group = raw.get("group") or "ungrouped"
    return Host(str(name), str(group), validate_host_values(values, where), where), sorted(unknown)


def validate_host_values(values, where):
    checked = {}
    for field, value in values.items():
        if not _given(value):
            continue
        field_where = "%s.%s" % (where, field)
        if field.endswith("currency"):
            checked[field] = currency_code(value, field_where)
        elif field == "pue":
            checked[field] = check_pue(value, field_where)
        elif field == "amortisation_months":
            checked[field] = positive(value, field_where, " months")
        elif field.endswith("watts"):
            checked[field] = non_negative(value, field_where, " watts")
        else:
            checked[field] = non_negative(value, field_where)
    if "hardware_price" not in checked:
        raise CostInputError("%s.hardware_price is missing%s: give the purchase price (0 for a host that is paid "
                             "off)" % (where, variable_hint("hardware_price")))
    if checked["hardware_price"] > 0 and "amortisation_months" not in checked:
        raise CostInputError("%s.amortisation_months is missing%s: over how many months the hardware price is "
                             "spread" % (where, variable_hint("amortisation_months")))
    idle, load = checked.get("power_idle_watts"), checked.get("power_load_watts")
    if idle is not None and load is not None and idle > load:
        raise CostInputError("%s.power_idle_watts (%s) is more than power_load_watts (%s): idle is the draw with "
                             "no work, load the draw under full work" % (where, _plain(idle), _plain(load)))
    return checked


def parse_cloud_prices(rows):
    if not isinstance(rows, list):
        raise CostInputError("cloud_prices must be a list of {provider, model, input_price_per_million, "
                             "output_price_per_million, currency}, got %r" % (rows,))
    parsed = []
    for index, row in enumerate(rows):
        where = "cloud_prices[%d]" % index
        if not isinstance(row, dict):
            raise CostInputError("%s must be a mapping, got %r" % (where, row))
        for key in ("provider", "model"):
            if not _given(row.get(key)):
                raise CostInputError("%s.%s is missing" % (where, key))
        where = "%s (%s/%s)" % (where, row["provider"], row["model"])
        for key in ("input_price_per_million", "output_price_per_million", "currency"):
            if not _given(row.get(key)):
                raise CostInputError("%s.%s is missing: every cloud price needs its input and output price per "
                                     "million tokens and their currency" % (where, key))
        parsed.append({
            "provider": str(row["provider"]),
            "model": str(row["model"]),
            "input_price_per_million": non_negative(row["input_price_per_million"],
                                                    where + ".input_price_per_million"),
            "output_price_per_million": non_negative(row["output_price_per_million"],
                                                     where + ".output_price_per_million"),
            "currency": currency_code(row["currency"], where + ".currency"),
            "where": where,
        })
    return parsed


def select_cloud_rows(rows, compare_models):
    """The rows to compare with: all of them, or those whose model (or provider/model) is named."""
    if not compare_models:
        return list(rows)
    selected = []
    for name in compare_models:
        matches = [row for row in rows if name in (row["model"], "%s/%s" % (row["provider"], row["model"]))]
        if not matches:
            known = ", ".join("%s/%s" % (row["provider"], row["model"]) for row in rows) or "none"
            raise CostInputError("compare_models: %r is not in cloud_prices (it has: %s); add a row for it or fix "
                                 "the name" % (name, known))
        selected.extend(row for row in matches if row not in selected)
    return selected


def parse_usage(items):
    """Monthly usage given by hand: a list of {model, prompt_tokens, generated_tokens, requests, node}."""
    if not isinstance(items, list):
        raise CostInputError("usage must be a list of {model, prompt_tokens, generated_tokens, requests}, got %r"
                             % (items,))
    series = {"prompt_tokens": [], "generated_tokens": [], "requests": []}
    for index, item in enumerate(items):
        where = "usage[%d]" % index
        if not isinstance(item, dict) or not _given(item.get("model")):
            raise CostInputError("%s.model is missing: usage is given per model" % where)
        where = "%s (%s)" % (where, item["model"])
        labels = {"model": str(item["model"]), "node": str(item["node"]) if _given(item.get("node")) else ""}
        for key, values in series.items():
            if key == "requests" and not _given(item.get(key)):
                continue
            if not _given(item.get(key)):
                raise CostInputError("%s.%s is missing: give the tokens per month" % (where, key))
            values.append((labels, non_negative(item[key], "%s.%s" % (where, key))))
    return Usage(series, factor=1.0, source="given")


# -- usage ---------------------------------------------------------------------------------------------------

class Usage:
    """Tokens and requests per month, per model and per node.

    ``series`` maps prompt_tokens / generated_tokens / requests to [(labels, value in the window)];
    ``factor`` turns a window's count into a month's (1 for usage given per month).
    """

    KINDS = ("prompt_tokens", "generated_tokens", "requests")

    def __init__(self, series, factor, source, window=None):
        self.series = series
        self.factor = factor
        self.source = source
        self.window = window

    def total(self, kind):
        return sum(value for _labels, value in self.series[kind]) * self.factor

    @property
    def prompt_tokens(self):
        return self.total("prompt_tokens")

    @property
    def generated_tokens(self):
        return self.total("generated_tokens")

    @property
    def tokens(self):
        return self.prompt_tokens + self.generated_tokens

    @property
    def requests(self):
        return self.total("requests")

    def by(self, label):
        """[{label: value, prompt_tokens, generated_tokens, total_tokens, requests}] per value of the label."""
        rows = {}
        for kind in self.KINDS:
            for labels, value in self.series[kind]:
                key = labels.get(label, "")
                row = rows.setdefault(key, dict((other, 0.0) for other in self.KINDS))
                row[kind] += value * self.factor
        table = []
        for key in sorted(rows, key=lambda name: (-rows[name]["prompt_tokens"] - rows[name]["generated_tokens"],
                                                  name)):
            row = rows[key]
            tokens = row["prompt_tokens"] + row["generated_tokens"]
            table.append(dict({label: key or None}, prompt_tokens=row["prompt_tokens"],
                              generated_tokens=row["generated_tokens"], total_tokens=tokens,
                              requests=row["requests"], share=tokens / self.tokens if self.tokens else None))
        return table

    def tokens_of_node(self, node):
        return sum(value for kind in ("prompt_tokens", "generated_tokens")
                   for labels, value in self.series[kind] if labels.get("node") == node) * self.factor

    def in_window(self):
        if self.window is None:
            return None
        return dict((kind, sum(value for _labels, value in self.series[kind])) for kind in self.KINDS)


def _measured_span(seconds):
    """A window shorter than a day in the unit a reader expects: 12.0 hours, 5 minutes, 40 seconds."""
    if seconds >= 3600:
        return "%.1f hours" % (seconds / 3600)
    if seconds >= 60:
        return "%d minutes" % round(seconds / 60)
    return "%d seconds" % round(seconds)


def parse_duration(text, where="window"):
    """Seconds in a Prometheus duration such as 7d, 36h or 1d12h."""
    if not isinstance(text, str) or not text or DURATION_PART.sub("", text) != "":
        raise CostInputError("%s must be a Prometheus duration such as 30d, 7d, 36h or 1d12h, got %r"
                             % (where, text))
    seconds = sum(int(count) * DURATION_UNITS[unit] for count, unit in DURATION_PART.findall(text))
    if seconds <= 0:
        raise CostInputError("%s must be longer than 0, got %r" % (where, text))
    return seconds


def parse_end(value, now):
    """A Unix time from RFC 3339 text or a number of seconds; ``now`` (a Unix time) when not given."""
    if not _given(value):
        return float(now)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise CostInputError("end must be an RFC 3339 time such as 2026-07-01T00:00:00Z or a Unix time in "
                             "seconds, got %r" % (value,)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def iso_time(timestamp):
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- Prometheus ----------------------------------------------------------------------------------------------

def prometheus_vector(client, query, at):
    """[(labels, value)] of an instant query at Unix time ``at``; NaN samples (no data) are left out."""
    request = "GET /api/v1/query %s" % query
    answer = client.get_json("/api/v1/query", params={"query": query, "time": "%.3f" % at})
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict) or answer.get("status") != "success":
        raise MalformedResponse("%s: the answer is not a Prometheus query result: %r" % (request, answer))
    if data.get("resultType") == "scalar":
        samples = [{"metric": {}, "value": data.get("result")}]
    elif data.get("resultType") == "vector" and isinstance(data.get("result"), list):
        samples = data["result"]
    else:
        raise MalformedResponse("%s: expected an instant vector, got result type %r; the query must return one "
                                "value per series at one time" % (request, data.get("resultType")))
    vector = []
    for sample in samples:
        try:
            labels, value = dict(sample["metric"]), float(sample["value"][1])
        except (KeyError, TypeError, IndexError, ValueError):
            raise MalformedResponse("%s: a sample without labels and a value: %r" % (request, sample)) from None
        if not math.isnan(value):
            vector.append((labels, value))
    return vector


def with_window(query, window):
    return query.replace(WINDOW_PLACEHOLDER, window)


def measure_coverage(client, coverage_query, window_text, end):
    """(seconds the window really covers, warning or None): Prometheus may hold less history than the window."""
    seconds = parse_duration(window_text)
    if not coverage_query:
        return seconds, None
    values = [value for _labels, value in prometheus_vector(client, with_window(coverage_query, window_text), end)]
    oldest = min(values) if values else None
    if oldest is None or oldest <= end - seconds or oldest >= end:
        return seconds, None
    covered = end - oldest
    return covered, ("Prometheus holds data only since %s: the %s window covers %.1f hours, and the month is "
                     "extrapolated from those" % (iso_time(oldest), window_text, covered / 3600))


def measure_usage(client, queries, window_text, end, coverage_query=DEFAULT_COVERAGE_QUERY):
    """Usage over the window that ends at ``end``, extrapolated to a month of DAYS_PER_MONTH days."""
    covered, coverage_warning = measure_coverage(client, coverage_query, window_text, end)
    series = {}
    for kind in Usage.KINDS:
        vector = prometheus_vector(client, with_window(queries[kind], window_text), end)
        series[kind] = [({"model": labels.get("model", ""), "node": labels.get("node", "")}, max(value, 0.0))
                        for labels, value in vector]
    seconds = parse_duration(window_text)
    window = {
        "duration": window_text,
        "seconds": seconds,
        "covered_seconds": covered,
        "start": iso_time(end - seconds),
        "end": iso_time(end),
        "monthly_factor": SECONDS_PER_MONTH / covered,
        "low_confidence": covered < LOW_CONFIDENCE_SECONDS,
        "coverage_warning": coverage_warning,
    }
    return Usage(series, factor=SECONDS_PER_MONTH / covered, source="prometheus", window=window)


class PowerReading:
    """What Prometheus says about one node's power: measured watts (the sum of the queries that answered for
    it, with their numbers) and its utilisation between 0 and 1."""

    def __init__(self, watts=None, queries=(), utilisation=None, note=None):
        self.watts = watts
        self.queries = list(queries)
        self.utilisation = utilisation
        self.note = note


def measure_power(client, power_queries, utilisation_query, window_text, end):
    """{node: PowerReading} from the power queries (summed per node) and the utilisation query."""
    readings = {}
    for number, query in enumerate(power_queries or (), start=1):
        for labels, value in prometheus_vector(client, with_window(query, window_text), end):
            node = labels.get("node")
            if not node or value < 0:
                continue
            reading = readings.setdefault(node, PowerReading(watts=0.0))
            reading.watts = (reading.watts or 0.0) + value
            reading.queries.append(number)
    if utilisation_query:
        for labels, value in prometheus_vector(client, with_window(utilisation_query, window_text), end):
            node = labels.get("node")
            if node:
                readings.setdefault(node, PowerReading()).utilisation = min(max(value, 0.0), 1.0)
    return readings


# -- power ---------------------------------------------------------------------------------------------------

def resolve_power(host, reading):
    """The average watts of a host for the month and where the figure comes from.

    In order: a figure given for the host (power_watts), a measurement (plus power_overhead_watts for what the
    sensors do not see), idle + utilisation x (load - idle), the load figure. ``fixed_watts`` is the part that
    does not depend on use: the idle draw where known, capped at the average; all of the load figure.
    """
    idle, load = host.get("power_idle_watts"), host.get("power_load_watts")
    overhead = host.get("power_overhead_watts") or 0.0
    if host.get("power_watts") is not None:
        watts, source, detail = host.get("power_watts"), "given", "power_watts"
    elif reading is not None and reading.watts is not None:
        watts = reading.watts + overhead
        source = "measured"
        detail = "quer%s %s" % ("y" if len(reading.queries) == 1 else "ies",
                                " + ".join(str(number) for number in reading.queries))
        if overhead:
            detail += " + %s W overhead" % _plain(overhead)
    elif reading is not None and reading.utilisation is not None and idle is not None and load is not None:
        watts = idle + reading.utilisation * (load - idle)
        source = "interpolated"
        detail = "%.1f %% utilisation%s" % (reading.utilisation * 100, " (%s)" % reading.note if reading.note else "")
    elif load is not None:
        watts, source, detail = load, "load_watts", "no measurement"
    else:
        raise CostInputError(
            "%s.power_load_watts is missing%s and there is no power measurement for this host: give its draw "
            "under load (and power_idle_watts), or power_watts, or a power query that returns its node"
            % (host.where, variable_hint("power_load_watts")))
    # Only a figure that reflects the use (measured, interpolated from a measured utilisation, or given) has a part
    # that grows with it; the load figure is an assumption, so it stays flat.
    fixed = min(idle, watts) if idle is not None and source != "load_watts" else watts
    return {"watts": watts, "fixed_watts": fixed, "idle_watts": idle, "load_watts": load, "source": source,
            "detail": detail, "utilisation": reading.utilisation if reading is not None else None}


def planned_readings(current_hosts, current_readings, planned_hosts):
    """Readings for planned hosts: the utilisation the current hosts of a group measured, spread evenly over
    the planned hosts of that group (the same work on more or fewer machines)."""
    busy = {}
    for host in current_hosts:
        reading = current_readings.get(host.name)
        if reading is not None and reading.utilisation is not None:
            busy.setdefault(host.group, []).append(reading.utilisation)
    planned_count = {}
    for host in planned_hosts:
        planned_count[host.group] = planned_count.get(host.group, 0) + 1
    readings = {}
    for host in planned_hosts:
        if host.group in busy:
            share = min(sum(busy[host.group]) / planned_count[host.group], 1.0)
            note = "current %s work over %d host%s" % (
                host.group, planned_count[host.group], "" if planned_count[host.group] == 1 else "s")
            readings[host.name] = PowerReading(utilisation=share, note=note)
    return readings


# -- costs ---------------------------------------------------------------------------------------------------

def host_costs(host, site, money, power):
    """Monthly costs of one host in the report currency, by category."""
    price_currency = host.get("currency") or site.currency
    amortisation = 0.0
    if host.get("hardware_price"):
        price = money.convert(host.get("hardware_price"), price_currency, host.field("hardware_price"))
        amortisation = price / host.get("amortisation_months")
    pue = host.get("pue") or site.pue
    energy_kwh = power["watts"] * pue * HOURS_PER_MONTH / 1000.0
    fixed_energy_kwh = power["fixed_watts"] * pue * HOURS_PER_MONTH / 1000.0
    kwh_price = electricity_price(host, site, money) if energy_kwh else 0.0
    hours = host.get("maintenance_hours_per_month") or 0.0
    maintenance = hours * maintenance_rate(host, site, money) if hours else 0.0
    support = host.get("support_per_month") or 0.0
    support = money.convert(support, price_currency, host.field("support_per_month"))
    monthly = {"amortisation": amortisation, "power": energy_kwh * kwh_price, "maintenance": maintenance,
               "fixed": support}
    monthly["total"] = sum(monthly[category] for category in CATEGORIES)
    return {
        "monthly": monthly,
        "energy_kwh_per_month": energy_kwh,
        "fixed_power_cost": fixed_energy_kwh * kwh_price,
        "pue": pue,
    }


def electricity_price(host, site, money):
    price = host.get("electricity_price_per_kwh")
    currency = host.get("electricity_currency")
    if price is None:
        price = site.electricity_price_per_kwh
        if price is None:
            raise CostInputError("%s.electricity_price_per_kwh is missing%s: give the price of a kWh site-wide "
                                 "(group_vars/all) or for the host" % (host.where,
                                                                       variable_hint("electricity_price_per_kwh")))
    currency = currency or site.electricity_currency or site.currency
    return money.convert(price, currency, host.field("electricity_price_per_kwh"))


def maintenance_rate(host, site, money):
    rate = host.get("maintenance_hourly_rate")
    if rate is None:
        rate = site.maintenance_hourly_rate
        if rate is None:
            raise CostInputError("%s.maintenance_hourly_rate is missing%s: the host has maintenance hours, so give "
                                 "the hourly rate site-wide (group_vars/all) or for the host"
                                 % (host.where, variable_hint("maintenance_hourly_rate")))
    currency = host.get("maintenance_currency") or site.maintenance_currency or site.currency
    return money.convert(rate, currency, host.field("maintenance_hourly_rate"))


def derive_tier(hosts):
    """The tier the prometheus role derives: 2+ load balancers cluster, 1 pro, none box (one AI node) or pro."""
    balancers = sum(1 for host in hosts if host.group == "loadbalancers")
    ai_nodes = sum(1 for host in hosts if host.group == "ai_nodes")
    if balancers > 1:
        return "cluster"
    if balancers == 1 or ai_nodes > 1:
        return "pro"
    return "box"


def tier_costs(name, tier, hosts, *, site, money, readings, usage, fixed_costs):
    """Costs of one tier (the current one or the planned one) at the measured usage."""
    host_rows, groups = [], {}
    for host in hosts:
        power = resolve_power(host, readings.get(host.name))
        costs = host_costs(host, site, money, power)
        tokens = usage.tokens_of_node(host.name) if name == "current" else None
        host_rows.append({
            "name": host.name,
            "group": host.group,
            "power": power,
            "energy_kwh_per_month": costs["energy_kwh_per_month"],
            "pue": costs["pue"],
            "monthly": costs["monthly"],
            "fixed_power_cost": costs["fixed_power_cost"],
            "tokens_per_month": tokens,
            "cost_per_million_tokens": per_million(costs["monthly"]["total"], tokens),
        })
        group = groups.setdefault(host.group, {"group": host.group, "hosts": 0,
                                               "monthly": dict((category, 0.0) for category in CATEGORIES)})
        group["hosts"] += 1
        for category in CATEGORIES:
            group["monthly"][category] += costs["monthly"][category]
    fixed_rows = [dict(item, monthly=money.convert(item["amount"], item["currency"], item["where"]))
                  for item in fixed_costs]
    monthly = dict((category, sum(row["monthly"][category] for row in host_rows)) for category in CATEGORIES)
    monthly["fixed"] += sum(row["monthly"] for row in fixed_rows)
    monthly["total"] = sum(monthly[category] for category in CATEGORIES)
    for group in groups.values():
        group["monthly"]["total"] = sum(group["monthly"][category] for category in CATEGORIES)
    return {
        "name": name,
        "tier": tier,
        "hosts": host_rows,
        "groups": list(groups.values()),
        "fixed_costs": [{"name": row["name"], "amount": row["amount"], "currency": row["currency"],
                         "monthly": row["monthly"]} for row in fixed_rows],
        "monthly": monthly,
        "shares": dict((category, monthly[category] / monthly["total"] if monthly["total"] else None)
                       for category in CATEGORIES),
        "cost_per_million_tokens": per_million(monthly["total"], usage.tokens),
        "line": cost_line(monthly["total"], sum(row["fixed_power_cost"] for row in host_rows),
                          monthly["power"], usage.tokens),
    }


def per_million(cost, tokens):
    """Cost per million tokens; None (n/a) without tokens rather than a division by zero."""
    if not tokens:
        return None
    return cost / tokens * TOKENS_PER_MILLION


def cost_line(total, fixed_power, power, tokens):
    """The on-prem cost as a line over monthly tokens: fixed + variable x tokens.

    Power above the idle draw is taken to grow with the tokens served; without tokens to divide it by,
    all of it counts as fixed.
    """
    variable = power - fixed_power if tokens else 0.0
    return {"fixed_per_month": total - variable,
            "variable_per_million_tokens": variable / tokens * TOKENS_PER_MILLION if tokens else 0.0}


def input_share(usage, default_share):
    if usage.tokens:
        return usage.prompt_tokens / usage.tokens, "measured" if usage.source == "prometheus" else "given"
    share = to_number(default_share, "default_input_share")
    if not 0 <= share <= 1:
        raise CostInputError("default_input_share must be between 0 and 1 (the share of input tokens), got %s"
                             % _plain(share))
    return share, "default"


def compare_with_cloud(tier, row, usage, share):
    """One cloud row against one tier: the bill at the measured usage and the break-even volume."""
    blended = share * row["input_price_per_million"] + (1 - share) * row["output_price_per_million"]
    at_usage = (usage.prompt_tokens * row["input_price_per_million"]
                + usage.generated_tokens * row["output_price_per_million"]) / TOKENS_PER_MILLION
    line = tier["line"]
    margin = blended - line["variable_per_million_tokens"]
    if line["fixed_per_month"] <= 0:
        break_even = 0.0
    elif margin > 0:
        break_even = line["fixed_per_month"] / margin * TOKENS_PER_MILLION
    else:
        break_even = None  # the cloud costs less per token than on-prem power alone: the lines never meet
    difference = at_usage - tier["monthly"]["total"]
    return {
        "provider": row["provider"],
        "model": row["model"],
        "input_price_per_million": row["input_price_per_million"],
        "output_price_per_million": row["output_price_per_million"],
        "blended_price_per_million": blended,
        "monthly_cost_at_usage": at_usage,
        "on_prem_saving_at_usage": difference,
        "cheaper_at_usage": "on-prem" if difference > 0 else "cloud" if difference < 0 else "equal",
        "break_even_tokens_per_month": break_even,
    }


def converted_cloud_rows(rows, money):
    converted = []
    for row in rows:
        converted.append(dict(
            row,
            input_price_per_million=money.convert(row["input_price_per_million"], row["currency"],
                                                  row["where"] + ".input_price_per_million"),
            output_price_per_million=money.convert(row["output_price_per_million"], row["currency"],
                                                   row["where"] + ".output_price_per_million"),
            price_currency=row["currency"],
        ))
    return converted


# -- the report ----------------------------------------------------------------------------------------------

class Plan:
    """A planned tier: its hosts (validated) and fixed costs."""

    def __init__(self, hosts, tier=None, fixed_costs=None):
        self.hosts = hosts
        self.tier = tier
        self.fixed_costs = fixed_costs


def hosts_from_inventory_list(inventory, groups=DEFAULT_GROUPS):
    """Host mappings from the JSON of ``ansible-inventory --list``: the hosts of ``groups`` (children
    included), each with its tco_ variables (already merged from its groups by ansible-inventory)."""
    if not isinstance(inventory, dict) or not isinstance(inventory.get("_meta", {}).get("hostvars", {}), dict):
        raise CostInputError("planned.inventory must be the JSON that ansible-inventory --list prints")
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    hosts, placed = [], set()
    for group in groups:
        for name in group_members(inventory, group, set()):
            if name in placed:
                continue
            placed.add(name)
            variables = hostvars.get(name) or {}
            host = dict((key, value) for key, value in variables.items() if key.startswith(VARIABLE_PREFIX))
            hosts.append(dict(host, name=name, group=group))
    if not hosts:
        raise CostInputError("planned.inventory has no hosts in the groups %s: check the inventory path and its "
                             "groups" % ", ".join(groups))
    return hosts


def group_members(inventory, group, visiting):
    if group in visiting or not isinstance(inventory.get(group), dict):
        return []
    visiting.add(group)
    entry = inventory[group]
    members = list(entry.get("hosts") or [])
    for child in entry.get("children") or []:
        members.extend(name for name in group_members(inventory, child, visiting) if name not in members)
    return members


def build_report(*, site, money, hosts, cloud_rows, usage, readings=None, tier=None, plan=None,
                 default_share=DEFAULT_INPUT_SHARE, generated_at, report_date, prices_read_on=None,
                 warnings=(), source=None):
    """The whole report as plain data (JSON-ready, rounded): what build_report's callers write and return."""
    readings = readings or {}
    share, share_source = input_share(usage, default_share)
    rows = converted_cloud_rows(cloud_rows, money)
    tiers = [tier_costs("current", tier or derive_tier(hosts), hosts, site=site, money=money, readings=readings,
                        usage=usage, fixed_costs=site.fixed_costs)]
    if plan is not None:
        tiers.append(tier_costs("planned", plan.tier or derive_tier(plan.hosts), plan.hosts, site=site, money=money,
                                readings=planned_readings(hosts, readings, plan.hosts), usage=usage,
                                fixed_costs=site.fixed_costs if plan.fixed_costs is None else plan.fixed_costs))
    for entry in tiers:
        entry["comparisons"] = [compare_with_cloud(entry, row, usage, share) for row in rows]
    all_warnings = list(warnings)
    if usage.window and usage.window["coverage_warning"]:
        all_warnings.append(usage.window["coverage_warning"])
    if usage.window and usage.window["low_confidence"]:
        all_warnings.append("low confidence: the usage was measured over %s, less than a day, and "
                            "extrapolated to a month" % _measured_span(usage.window["covered_seconds"]))
    if not usage.tokens:
        all_warnings.append("no tokens were served: the cost per million tokens is n/a and the break-even uses "
                            "an input share of %s" % _plain(share))
    report = {
        "format_version": REPORT_FORMAT_VERSION,
        "generated_at": generated_at,
        "report_date": report_date,
        "currency": money.currency,
        "exchange_rates": dict(sorted(money.rates.items())),
        "exchange_rates_used": sorted(money.used),
        "assumptions": {
            "days_per_month": DAYS_PER_MONTH,
            "hours_per_month": HOURS_PER_MONTH,
            "input_share": share,
            "input_share_source": share_source,
            "prices_read_on": prices_read_on,
        },
        "source": source,
        "usage": usage_summary(usage),
        "tiers": tiers,
        "cloud_prices": [{"provider": row["provider"], "model": row["model"], "currency": row["price_currency"],
                          "input_price_per_million": row["input_price_per_million"],
                          "output_price_per_million": row["output_price_per_million"]} for row in rows],
        "warnings": all_warnings,
    }
    return rounded(report)


def usage_summary(usage):
    return {
        "source": usage.source,
        "window": usage.window,
        "monthly": {"prompt_tokens": usage.prompt_tokens, "generated_tokens": usage.generated_tokens,
                    "total_tokens": usage.tokens, "requests": usage.requests},
        "in_window": usage.in_window(),
        "per_model": usage.by("model"),
        # Usage given by hand need not name nodes; a Prometheus series without a node label is still shown.
        "per_node": [row for row in usage.by("node") if row["node"] is not None or usage.source != "given"],
    }


def rounded(value, digits=6):
    """Floats rounded so the JSON is stable across runs and readable; integers stay integers."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return dict((key, rounded(item, digits)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [rounded(item, digits) for item in value]
    return value
