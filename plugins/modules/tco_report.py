# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tco_report
short_description: Total cost of ownership of an on-prem LLM tier against a cloud token bill
version_added: 0.1.0
description:
  - Computes what a tier of hosts costs per month (hardware amortisation, power, maintenance, support and fixed
    costs), the tokens it serves per month, the cost per million tokens, and compares it with cloud prices per
    million tokens, including the break-even volume for each cloud model.
  - Usage (prompt and generated tokens, requests, per model and per node) and each host's average power come
    from Prometheus (O(url)) over O(window), extrapolated to a month of 30.44 days; or usage is given by hand
    with O(usage).
  - With O(planned) it computes the same for a planned tier (for example AI Box to AI Cluster) at the same
    usage, so the report says what moving up a tier would cost.
  - Returns the report as data, and with O(report_dir) writes it as C(tco-DATE.json), C(tco-DATE.md) and a
    self-contained C(tco-DATE.html) with a chart (no network needed to open it).
  - See C(docs/tco.md) in the collection for the model, its assumptions and how to read the chart.
author:
  - Namtech platform engineering (@namtech)
options:
  currency:
    description:
      - The currency every price is in unless it names its own (a host's C(currency), O(electricity_currency),
        O(maintenance_currency), a fixed cost's C(currency)). Also the report's currency unless
        O(report_currency) is given.
      - A three-letter ISO 4217 code such as V(EUR), V(USD) or V(VND).
    type: str
    required: true
  report_currency:
    description:
      - The currency of the report. Every amount in another currency is converted with O(exchange_rates).
      - Defaults to O(currency).
    type: str
  exchange_rates:
    description:
      - Rates into the report currency, as units of the report currency for one unit of the other currency;
        for a report in EUR, C(USD) set to V(0.92) means that one US dollar is worth 0.92 euro.
      - An amount in a currency other than the report's and without a rate here fails, naming its field.
    type: dict
    default: {}
  electricity_price_per_kwh:
    description:
      - Price of one kWh. Required unless every host gives its own C(electricity_price_per_kwh).
    type: float
  electricity_currency:
    description:
      - Currency of the electricity price, O(currency) when not given.
    type: str
  pue:
    description:
      - Power usage effectiveness of the room the hosts are in (1.0 for an office, 1.3 to 1.8 for a typical data
        centre); the host draw is multiplied by it.
    type: float
    default: 1.0
  maintenance_hourly_rate:
    description:
      - Cost of one hour of maintenance work. Required when a host has C(maintenance_hours_per_month) and no
        C(maintenance_hourly_rate) of its own.
    type: float
  maintenance_currency:
    description:
      - Currency of the maintenance rate, O(currency) when not given.
    type: str
  fixed_costs_per_month:
    description:
      - Monthly costs that belong to the site rather than a host (support contracts, rack space, licences).
    type: list
    elements: dict
    default: []
    suboptions: &fixed_cost
      name:
        description: What the cost is.
        type: str
        required: true
      amount:
        description: The amount per month.
        type: float
        required: true
      currency:
        description: Its currency, O(currency) when not given.
        type: str
  hosts:
    description:
      - The hosts of the current tier, every one that costs money (AI nodes, load balancers, monitoring,
        storage). Each is a mapping with C(name) (the inventory name, also the C(node) label in Prometheus),
        C(group), and its cost inputs, with or without the C(tco_) prefix of the inventory variables.
      - C(hardware_price) (required, 0 for a paid-off host) and C(amortisation_months) (required when the price is
        more than 0); C(currency) of the host's prices.
      - C(power_idle_watts) and C(power_load_watts) (the draw with no work and under full work);
        C(power_watts) (an average known by other means, used as it is); C(power_overhead_watts) (added to a
        measurement, for what the sensors do not see).
      - C(maintenance_hours_per_month), C(support_per_month) (a support contract for the host).
      - C(electricity_price_per_kwh), C(electricity_currency), C(pue), C(maintenance_hourly_rate),
        C(maintenance_currency) override the site's value for this host.
      - Other C(tco_) keys of the playbook's site-wide variables are skipped; any other key is reported as a
        warning (a misspelt variable).
    type: list
    elements: dict
    required: true
  tier:
    description:
      - The name of the current tier in the report. Derived from the hosts' groups when not given, as the
        prometheus role does it (two or more load balancers C(cluster), one C(pro), none C(box) for one AI node).
    type: str
  planned:
    description:
      - A planned tier to cost at the same usage (the what-if), from its hosts or from its inventory.
      - Planned hosts have no measurement; their power is C(power_watts) when given, else idle and load
        interpolated with the utilisation the current hosts of the same group measured, spread over the planned
        hosts of that group, else C(power_load_watts).
    type: dict
    suboptions:
      tier:
        description: Its name in the report; derived from its hosts' groups when not given.
        type: str
      hosts:
        description: Its hosts, as O(hosts).
        type: list
        elements: dict
      inventory:
        description:
          - The JSON that C(ansible-inventory -i PATH --list) prints for the planned tier's inventory. Its values
            are read as they are, without templating, so they must be literals.
        type: dict
      groups:
        description: With O(planned.inventory), the groups whose hosts make the tier.
        type: list
        elements: str
        default: [ai_nodes, loadbalancers, monitoring, storage]
      fixed_costs_per_month:
        description: Its fixed costs, as O(fixed_costs_per_month); the current ones when not given.
        type: list
        elements: dict
        suboptions: *fixed_cost
  cloud_prices:
    description:
      - The cloud prices to compare with, as the user reads them from the providers' price lists.
    type: list
    elements: dict
    default: []
    suboptions:
      provider:
        description: The provider.
        type: str
      model:
        description: The model.
        type: str
      input_price_per_million:
        description: Price of one million input (prompt) tokens.
        type: float
      output_price_per_million:
        description: Price of one million output (generated) tokens.
        type: float
      currency:
        description: The currency of both prices. Required.
        type: str
  cloud_prices_read_on:
    description:
      - When the cloud prices were read, shown in the report.
    type: str
  compare_models:
    description:
      - The cloud models to compare with, by C(model) or C(provider/model). All rows of O(cloud_prices) when empty.
      - A name that is not in O(cloud_prices) fails.
    type: list
    elements: str
    default: []
  usage:
    description:
      - Usage per month given by hand, one entry per model (and node). When given, Prometheus is not asked for
        usage; it is still asked for power when O(url) is set. An empty list means no usage.
      - Without O(usage), O(url) is required.
    type: list
    elements: dict
    suboptions:
      model:
        description: The model.
        type: str
        required: true
      prompt_tokens:
        description: Prompt (input) tokens per month.
        type: float
      generated_tokens:
        description: Generated (output) tokens per month.
        type: float
      requests:
        description: Requests per month.
        type: float
      node:
        description: The host that served them.
        type: str
  default_input_share:
    description:
      - The share of input tokens used for the break-even when there is no usage to measure it from.
    type: float
    default: 0.75
  url:
    description:
      - Base URL of the Prometheus HTTP API, for example C(http://10.0.0.9:9090). Without it, nothing is
        measured.
    type: str
  window:
    description:
      - The Prometheus duration over which usage and power are measured, ending at O(end), for example
        V(30d), V(7d) or V(36h). A window shorter than a day is flagged as low confidence in the report.
    type: str
    default: 7d
  end:
    description:
      - The end of the window (RFC 3339 or Unix seconds), and the report's date. Now when not given.
    type: str
  prompt_tokens_query:
    description:
      - PromQL for the prompt tokens in the window per C(model) and C(node) label; C($window) is replaced by
        O(window). The default adds vLLM's C(vllm:prompt_tokens_total) (label C(model_name)) and
        C(namtech_llm_prompt_tokens_total) (label C(model)).
    type: str
  generated_tokens_query:
    description:
      - As O(prompt_tokens_query), for the generated tokens (C(vllm:generation_tokens_total),
        C(namtech_llm_generated_tokens_total)).
    type: str
  requests_query:
    description:
      - As O(prompt_tokens_query), for the requests (C(vllm:request_success_total), C(namtech_llm_requests_total)).
    type: str
  power_queries:
    description:
      - PromQL queries for average watts per C(node) label over C($window). A host's measured power is the sum of
        the queries that return its node, so each must measure another part of the machine. The defaults read
        RAPL package and DRAM energy from node_exporter and the C(namtech_gpu_power_watts) gauge.
      - An empty list measures no power.
    type: list
    elements: str
  utilisation_query:
    description:
      - PromQL for each node's utilisation between 0 and 1 over C($window), for hosts without a power
        measurement. The default is the CPU's busy share from node_exporter. An empty string disables it.
    type: str
  coverage_query:
    description:
      - PromQL for the Unix time of the oldest sample Prometheus holds; when it is inside the window the month is
        extrapolated from the part of the window that has data. An empty string disables it.
    type: str
  report_dir:
    description:
      - Write the report into this directory as C(tco-DATE.json), C(tco-DATE.md) and C(tco-DATE.html), DATE
        being the day of O(end). Created when missing. Nothing is written when not given.
      - Files whose content would only differ by the generation time are left alone.
    type: path
extends_documentation_fragment:
  - namtech.internal_ai.api
attributes:
  check_mode:
    support: full
    description: Computes the report, asks Prometheus as usual and says whether the files would change, but writes
      nothing.
  diff_mode:
    support: full
    description: The Markdown report before and after.
notes:
  - Runs on the controller (a play on C(localhost), or C(delegate_to) C(localhost)); the playbook
    C(namtech.internal_ai.tco_report) collects the inputs from the inventory.
  - Usage is extrapolated linearly to a month; power above idle is taken to grow linearly with tokens. Neither
    knows a tier's capacity, so a break-even beyond what the hardware can serve cannot be reached.
seealso:
  - module: namtech.internal_ai.ollama_info
"""

EXAMPLES = r"""
- name: Cost of the tier from Prometheus over the last 30 days, against two cloud models
  namtech.internal_ai.tco_report:
    url: http://10.0.0.9:9090
    window: 30d
    currency: EUR
    exchange_rates: {USD: 0.92}
    electricity_price_per_kwh: 0.25
    pue: 1.2
    maintenance_hourly_rate: 60
    fixed_costs_per_month:
      - {name: rack space, amount: 120}
    hosts:
      - {name: ai1, group: ai_nodes, hardware_price: 4800, amortisation_months: 36, power_idle_watts: 15,
         power_load_watts: 90, maintenance_hours_per_month: 2}
      - {name: mon1, group: monitoring, hardware_price: 900, amortisation_months: 48, power_load_watts: 20}
    cloud_prices:
      - {provider: example-cloud, model: large, input_price_per_million: 2.5, output_price_per_million: 10,
         currency: USD}
    report_dir: /srv/reports/tco
  register: tco

- name: Show the cost per million tokens
  ansible.builtin.debug:
    msg: "{{ tco.report.tiers[0].cost_per_million_tokens }} {{ tco.report.currency }} per million tokens"

- name: Usage given by hand, with what moving up to the planned cluster would cost
  namtech.internal_ai.tco_report:
    currency: USD
    electricity_price_per_kwh: 0.15
    hosts: "{{ current_hosts }}"
    usage:
      - {model: assistant, prompt_tokens: 120000000, generated_tokens: 30000000, requests: 250000}
    planned:
      inventory: "{{ lookup('ansible.builtin.pipe', 'ansible-inventory -i inventories/cluster --list') | from_json }}"
    cloud_prices: "{{ (lookup('ansible.builtin.file', 'cloud_prices.yml') | from_yaml).tco_cloud_prices }}"
  register: what_if
"""

RETURN = r"""
report:
  description:
    - The whole report, as written to C(tco-DATE.json). Amounts are per month in RV(report.currency); floats are
      rounded to 6 decimals; a cost per million tokens is null when there were no tokens.
  returned: always
  type: dict
  contains:
    generated_at:
      description: When the report was made (UTC); kept from the existing files when nothing else changed.
      type: str
    report_date:
      description: The day of the window's end.
      type: str
    currency:
      description: The report's currency.
      type: str
    exchange_rates:
      description: The rates given; RV(report.exchange_rates_used) lists those a conversion needed.
      type: dict
    exchange_rates_used:
      description: The currencies that were converted.
      type: list
      elements: str
    assumptions:
      description: Days and hours per month, the input share of tokens and where it comes from, and when the cloud
        prices were read.
      type: dict
    source:
      description: Where measurements came from (C(prometheus_url), C(window), C(usage_from)) and the queries
        used.
      type: dict
    usage:
      description:
        - C(source) (V(prometheus) or V(given)), C(window) (C(duration), C(seconds), C(covered_seconds),
          C(start), C(end), C(monthly_factor), C(low_confidence)), C(monthly) and C(in_window) totals
          (C(prompt_tokens), C(generated_tokens), C(total_tokens), C(requests)), C(per_model) and C(per_node).
      type: dict
    tiers:
      description:
        - The current tier first, then the planned one. Each has C(name) (V(current) or V(planned)), C(tier),
          C(hosts) (per host C(power) with its C(watts), C(source) and C(detail), C(energy_kwh_per_month),
          C(monthly) costs, C(tokens_per_month), C(cost_per_million_tokens)), C(groups), C(fixed_costs),
          C(monthly) (C(amortisation), C(power), C(maintenance), C(fixed), C(total)), C(shares) of the total,
          C(cost_per_million_tokens), C(line) (C(fixed_per_month), C(variable_per_million_tokens)) and
          C(comparisons) (per cloud row, C(monthly_cost_at_usage), C(on_prem_saving_at_usage),
          C(cheaper_at_usage), C(blended_price_per_million), C(break_even_tokens_per_month), null when the lines
          never meet).
      type: list
      elements: dict
    cloud_prices:
      description: The compared cloud rows, their prices converted to the report currency.
      type: list
      elements: dict
    warnings:
      description: What makes the figures less certain (a short window, missing history, no usage).
      type: list
      elements: str
  sample:
    currency: EUR
    tiers:
      - name: current
        tier: box
        monthly: {amortisation: 133.33, power: 13.15, maintenance: 120.0, fixed: 0.0, total: 266.48}
        cost_per_million_tokens: 1.78
summary:
  description: A few lines that say what the report says, for a playbook's output.
  returned: always
  type: list
  elements: str
  sample:
    - "Usage: 150 M tokens per month (120 M prompt, 30 M generated) in 250,000 requests, as given per month."
    - "box tier (current): 266 EUR per month (amortisation 50.0 %, power 4.9 %, maintenance 45.0 %, support and
      fixed costs 0.0 %); 1.78 EUR per million tokens."
files:
  description: The report files written, or that would be written in check mode, or that are already up to date.
  returned: when O(report_dir) is given
  type: list
  elements: str
  sample:
    - /srv/reports/tco/tco-2026-07-01.json
    - /srv/reports/tco/tco-2026-07-01.md
    - /srv/reports/tco/tco-2026-07-01.html
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.api_module import (
    API_MUTUALLY_EXCLUSIVE,
    API_REQUIRED_BY,
    api_argument_spec,
    fail_with_api_error,
    http_client_from_module,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import (
    fail_on_nul_bytes_in_paths,
    write_atomically,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError
from ansible_collections.namtech.internal_ai.plugins.module_utils.tco import (
    DEFAULT_COVERAGE_QUERY,
    DEFAULT_GENERATED_TOKENS_QUERY,
    DEFAULT_GROUPS,
    DEFAULT_INPUT_SHARE,
    DEFAULT_POWER_QUERIES,
    DEFAULT_PROMPT_TOKENS_QUERY,
    DEFAULT_REQUESTS_QUERY,
    DEFAULT_UTILISATION_QUERY,
    CostInputError,
    Money,
    Plan,
    Site,
    build_report,
    hosts_from_inventory_list,
    iso_time,
    measure_power,
    measure_usage,
    parse_cloud_prices,
    parse_duration,
    parse_end,
    parse_fixed_costs,
    parse_hosts,
    parse_usage,
    select_cloud_rows,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.tco_report_render import (
    render_html,
    render_markdown,
    summary_lines,
)

FIXED_COST_SPEC = dict(name=dict(type="str", required=True), amount=dict(type="float", required=True),
                       currency=dict(type="str"))


def argument_spec():
    spec = api_argument_spec(None)
    spec.update(
        currency=dict(type="str", required=True),
        report_currency=dict(type="str"),
        exchange_rates=dict(type="dict", default={}),
        electricity_price_per_kwh=dict(type="float"),
        electricity_currency=dict(type="str"),
        pue=dict(type="float", default=1.0),
        maintenance_hourly_rate=dict(type="float"),
        maintenance_currency=dict(type="str"),
        fixed_costs_per_month=dict(type="list", elements="dict", default=[], options=FIXED_COST_SPEC),
        hosts=dict(type="list", elements="dict", required=True),
        tier=dict(type="str"),
        planned=dict(type="dict", options=dict(
            tier=dict(type="str"),
            hosts=dict(type="list", elements="dict"),
            inventory=dict(type="dict"),
            groups=dict(type="list", elements="str", default=list(DEFAULT_GROUPS)),
            fixed_costs_per_month=dict(type="list", elements="dict", options=FIXED_COST_SPEC),
        ), mutually_exclusive=[("hosts", "inventory")], required_one_of=[("hosts", "inventory")]),
        cloud_prices=dict(type="list", elements="dict", default=[], options=dict(
            provider=dict(type="str"),
            model=dict(type="str"),
            input_price_per_million=dict(type="float"),
            output_price_per_million=dict(type="float"),
            currency=dict(type="str"),
        )),
        cloud_prices_read_on=dict(type="str"),
        compare_models=dict(type="list", elements="str", default=[]),
        usage=dict(type="list", elements="dict", options=dict(
            model=dict(type="str", required=True),
            prompt_tokens=dict(type="float", no_log=False),
            generated_tokens=dict(type="float", no_log=False),
            requests=dict(type="float"),
            node=dict(type="str"),
        )),
        default_input_share=dict(type="float", default=DEFAULT_INPUT_SHARE),
        window=dict(type="str", default="7d"),
        end=dict(type="str"),
        prompt_tokens_query=dict(type="str", no_log=False),
        generated_tokens_query=dict(type="str", no_log=False),
        requests_query=dict(type="str"),
        power_queries=dict(type="list", elements="str"),
        utilisation_query=dict(type="str"),
        coverage_query=dict(type="str"),
        report_dir=dict(type="path"),
    )
    return spec


def query_or_default(value, default):
    return default if value is None else value


def prometheus_queries(params):
    """The queries as they will be sent (before $window is replaced), defaults filled in."""
    return {
        "prompt_tokens": query_or_default(params["prompt_tokens_query"], DEFAULT_PROMPT_TOKENS_QUERY),
        "generated_tokens": query_or_default(params["generated_tokens_query"], DEFAULT_GENERATED_TOKENS_QUERY),
        "requests": query_or_default(params["requests_query"], DEFAULT_REQUESTS_QUERY),
        "power": list(query_or_default(params["power_queries"], DEFAULT_POWER_QUERIES)),
        "utilisation": query_or_default(params["utilisation_query"], DEFAULT_UTILISATION_QUERY),
        "coverage": query_or_default(params["coverage_query"], DEFAULT_COVERAGE_QUERY),
    }


def inputs_from_params(params):
    """The validated inputs; CostInputError names the first field at fault."""
    site = Site(params["currency"], electricity_price_per_kwh=params["electricity_price_per_kwh"],
                electricity_currency=params["electricity_currency"], pue=params["pue"],
                maintenance_hourly_rate=params["maintenance_hourly_rate"],
                maintenance_currency=params["maintenance_currency"],
                fixed_costs_per_month=params["fixed_costs_per_month"])
    money = Money(params["report_currency"] or params["currency"], params["exchange_rates"])
    hosts, warnings = parse_hosts(params["hosts"])
    if not hosts:
        raise CostInputError("hosts is empty: give every host of the tier with its cost inputs")
    plan = None
    if params["planned"]:
        plan, planned_warnings = plan_from_params(params["planned"], site)
        warnings += planned_warnings
    rows = select_cloud_rows(parse_cloud_prices(params["cloud_prices"]), params["compare_models"])
    parse_duration(params["window"])
    return site, money, hosts, plan, rows, warnings


def plan_from_params(planned, site):
    raw_hosts = planned["hosts"]
    if raw_hosts is None:
        raw_hosts = hosts_from_inventory_list(planned["inventory"], planned["groups"])
    hosts, warnings = parse_hosts(raw_hosts, label="planned.hosts")
    if not hosts:
        raise CostInputError("planned.hosts is empty: give the hosts of the planned tier")
    fixed = None
    if planned["fixed_costs_per_month"] is not None:
        fixed = parse_fixed_costs(planned["fixed_costs_per_month"], site.currency, "planned.fixed_costs_per_month")
    return Plan(hosts, tier=planned["tier"], fixed_costs=fixed), warnings


def measure(module, end, queries):
    """(usage, power readings) from Prometheus and/or the usage given by hand."""
    params = module.params
    usage = parse_usage(params["usage"]) if params["usage"] is not None else None
    if not params["url"]:
        if usage is None:
            raise CostInputError("give url (the Prometheus API, to measure usage) or usage (tokens per month by "
                                 "hand, an empty list for none)")
        return usage, {}
    with http_client_from_module(module) as client:
        try:
            if usage is None:
                usage = measure_usage(client, queries, params["window"], end, queries["coverage"])
            readings = measure_power(client, queries["power"], queries["utilisation"], params["window"], end)
        except ApiError as exc:
            fail_with_api_error(module, exc)
    return usage, readings


def source_of(params, usage, queries):
    if not params["url"]:
        return {"prometheus_url": None, "usage_from": "given"}
    return {"prometheus_url": params["url"], "window": params["window"], "usage_from": usage.source,
            "queries": queries}


# -- files ---------------------------------------------------------------------------------------------------

def report_paths(directory, report_date):
    base = os.path.join(directory, "tco-%s" % report_date)
    return dict((kind, "%s.%s" % (base, kind)) for kind in ("json", "md", "html"))


def render_all(report):
    return {"json": json.dumps(report, indent=2, sort_keys=True) + "\n", "md": render_markdown(report),
            "html": render_html(report)}


def read_text(path):
    """The file's text; None when it cannot be read (missing, or a path that cannot exist): it is then written,
    and writing says what is wrong."""
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError):
        return None


def previous_generated_at(paths):
    """The generation time of the report already on disk, so a report that says the same keeps its files."""
    text = read_text(paths["json"])
    if text is None:
        return None
    try:
        previous = json.loads(text)
    except ValueError:
        return None
    return previous.get("generated_at") if isinstance(previous, dict) else None


def write_report(module, path, text):
    try:
        write_atomically(path, text, mode=0o644, move=module.atomic_move)
    except OSError as exc:
        module.fail_json(msg="cannot write the report %s: %s. Check that report_dir is writable" % (path, exc))


def write_reports(module, report, make_report):
    """Write the three files unless they already say the same; returns (report, changed, paths, diff)."""
    directory = module.params["report_dir"]
    paths = report_paths(directory, report["report_date"])
    kept_time = previous_generated_at(paths)
    if kept_time is not None:
        same_report = make_report(kept_time)
        texts = render_all(same_report)
        if all(read_text(paths[kind]) == texts[kind] for kind in paths):
            return same_report, False, paths, None
    texts = render_all(report)
    diff = {"before": read_text(paths["md"]) or "", "after": texts["md"], "before_header": paths["md"],
            "after_header": paths["md"]}
    if not module.check_mode:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            module.fail_json(msg="cannot create report_dir %s: %s. Give a directory the controller user can write"
                             % (directory, exc))
        for kind in ("json", "md", "html"):
            write_report(module, paths[kind], texts[kind])
    return report, True, paths, diff


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=API_MUTUALLY_EXCLUSIVE,
        required_by=API_REQUIRED_BY,
        supports_check_mode=True,
    )
    fail_on_nul_bytes_in_paths(module)
    params = module.params
    now = time.time()
    try:
        site, money, hosts, plan, rows, warnings = inputs_from_params(params)
        end = parse_end(params["end"], now)
        queries = prometheus_queries(params)
        usage, readings = measure(module, end, queries)

        def make_report(generated_at):
            return build_report(site=site, money=money, hosts=hosts, cloud_rows=rows, usage=usage,
                                readings=readings, tier=params["tier"], plan=plan,
                                default_share=params["default_input_share"], generated_at=generated_at,
                                report_date=iso_time(end)[:10], prices_read_on=params["cloud_prices_read_on"],
                                warnings=warnings, source=source_of(params, usage, queries))

        report = make_report(iso_time(now))
    except CostInputError as exc:
        module.fail_json(msg=str(exc))
    for warning in report["warnings"]:
        module.warn(warning)
    result = dict(changed=False, report=report)
    if params["report_dir"]:
        report, changed, paths, diff = write_reports(module, report, make_report)
        result.update(report=report, changed=changed, files=[paths[kind] for kind in ("json", "md", "html")])
        if diff is not None and module._diff:
            result["diff"] = diff
    result["summary"] = summary_lines(report)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
