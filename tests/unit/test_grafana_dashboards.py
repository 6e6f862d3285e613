"""The grafana role's dashboards and provisioning files: every dashboard is valid JSON with a recent schema, reads
the data source the role provisions (one fixed uid), names no host, and every PromQL expression it holds passes
`promtool check rules` (each wrapped as a recording rule: `promtool query` needs a live server). The helpers that
find the expressions and the metrics they read also serve tests/integration/test_dashboards_queries.py."""

from __future__ import annotations

import configparser
import itertools
import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

# As unit.role_templates: tests/integration/test_dashboards_queries.py imports this module as unit.*.
from unit.role_templates import render_role_template

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "grafana"
DASHBOARDS_DIR = ROLE / "files" / "dashboards"
RULES_TEMPLATE = REPO / "roles" / "prometheus" / "templates" / "rules" / "namtech.yml.j2"
MONITORING_DOC = REPO / "docs" / "monitoring.md"
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": ROLE_VARS["_grafana_datasource_uid"]}
MONITORING = {"monitoring": {"mon1": "10.0.0.20"}}
# Grafana's own variables, and the values the syntax check puts in for the dashboards' variables.
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
SYNTAX_CHECK_VALUES = dict(GRAFANA_VARIABLES, tier=".*", node="ai1")
# Labels whose value names one host: an expression may only match them against a variable.
HOST_LABELS = ("node", "instance", "server", "lb")
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)")
PROMQL_WORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right",
                "offset", "inf", "nan", "atan2"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package prometheus: make bootstrap)")


def load_dashboards():
    """{file stem: dashboard} of every dashboard the role ships."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def all_panels(dashboard):
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variable_query(variable):
    """The PromQL inside a query variable's label_values(EXPR, LABEL); None for label_values(LABEL)."""
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    match = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query)
    return match.group(1) if match else None


def dashboard_expressions(dashboard):
    """(where, expression) of every target and every query variable, with Grafana's variables still in."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield "%s / %s / %s" % (dashboard["title"], panel["title"], target["refId"]), target["expr"]
    for variable in dashboard["templating"]["list"]:
        expression = variable_query(variable)
        if expression:
            yield "%s / variable %s" % (dashboard["title"], variable["name"]), expression


def substitute_variables(expression, values):
    """The expression with $name and ${name} replaced ($1 is label_replace's); a KeyError names an unknown one."""
    return VARIABLE.sub(lambda match: values[match.group(1) or match.group(2)], expression)


def mask(expression):
    """The expression with what is not structure blanked out, at the same offsets: string contents, range and
    subquery brackets, the label lists of by/without/on/ignoring/group_left/group_right, offsets."""
    masked = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`',
                    lambda match: match.group()[0] + "#" * (len(match.group()) - 2) + match.group()[0], expression)
    masked = re.sub(r"\[[^\]]*\]", lambda match: " " * len(match.group()), masked)
    masked = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
                    lambda match: " " * len(match.group()), masked)
    return re.sub(r"\boffset\s+-?\w+", lambda match: " " * len(match.group()), masked)


def selectors(expression):
    """The series selectors an expression reads, as written: name{matchers}, name or {matchers}."""
    masked = mask(expression)
    found = []
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\{[^}]*\})?|\{[^}]*\}", masked):
        name = match.group(1)
        if name and (name.lower() in PROMQL_WORDS or masked[match.end(1):].lstrip().startswith("(")):
            continue
        found.append(expression[match.start():match.end()])
    return found


def metric_selectors(expression):
    """(metric names, __name__ regular expressions) an expression reads; recorded series count as metrics."""
    names, regexes = set(), set()
    for selector in selectors(expression):
        name = re.match(r"[A-Za-z_:][\w:]*", selector)
        if name:
            names.add(name.group())
        regexes.update(json.loads(quoted) for quoted in re.findall(r'__name__\s*=~\s*("(?:\\.|[^"\\])*")', selector))
    return names, regexes


def promtool_check_expressions(directory, expressions):
    """`promtool check rules` on a rules file that records each expression; (return code, output)."""
    rules = [{"record": "dashboard:expression_%d" % number, "expr": expression}
             for number, expression in enumerate(expressions)]
    path = directory / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(path)], check=False, capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stdout + result.stderr


DASHBOARDS = load_dashboards()


def test_the_role_ships_and_provisions_the_same_dashboards():
    assert sorted(DASHBOARDS) == ["capacity", "node", "overview"]
    provisioned = {entry["file"]: entry["uid"] for entry in ROLE_VARS["_grafana_dashboards"]}
    assert provisioned == {"%s.json" % name: dashboard["uid"] for name, dashboard in DASHBOARDS.items()}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_is_a_recent_grafana_model_with_unique_panel_ids(name):
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "namtech-" + name
    assert dashboard["editable"] is False
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in all_panels(dashboard):
        references = [target["refId"] for target in panel.get("targets", [])]
        assert len(references) == len(set(references)), panel["title"]
        assert all(target["expr"].strip() for target in panel.get("targets", [])), panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlapping(name):
    cells = {}
    for panel in DASHBOARDS[name]["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])):
            assert cell not in cells, "%s overlaps %s" % (panel["title"], cells[cell])
            cells[cell] = panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_reads_the_provisioned_data_source(name):
    dashboard = DASHBOARDS[name]
    for panel in all_panels(dashboard):
        if panel["type"] in ("row", "text"):
            assert "targets" not in panel, panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
    assert all(variable["datasource"] == DATASOURCE for variable in dashboard["templating"]["list"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_query_names_a_host_and_every_variable_is_defined(name):
    dashboard = DASHBOARDS[name]
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | set(GRAFANA_VARIABLES)
    for where, expression in dashboard_expressions(dashboard):
        used = {first or second for first, second in VARIABLE.findall(expression)}
        assert used <= defined, (where, used - defined)
        literal = re.findall(r'\b(%s)\s*=~?\s*"([^"$]+)"' % "|".join(HOST_LABELS), expression)
        assert literal == [], (where, literal)
        assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", expression), where


@needs_promtool
def test_every_expression_is_valid_promql(tmp_path):
    expressions = [(where, substitute_variables(expression, SYNTAX_CHECK_VALUES))
                   for dashboard in DASHBOARDS.values() for where, expression in dashboard_expressions(dashboard)]
    code, output = promtool_check_expressions(tmp_path, [expression for _where, expression in expressions])
    assert code == 0, output
    assert "SUCCESS: %d rules found" % len(expressions) in output


@needs_promtool
def test_the_syntax_check_catches_a_broken_expression(tmp_path):
    code, output = promtool_check_expressions(tmp_path, ["sum(rate(up[5m])", "up"])
    assert code != 0
    assert "dashboard:expression_0" in output


def test_the_recorded_series_the_dashboards_read_are_recorded_by_the_rules():
    recorded = set(re.findall(r"^\s*- record: (\S+)$", RULES_TEMPLATE.read_text(encoding="utf-8"), re.MULTILINE))
    read = {name for dashboard in DASHBOARDS.values() for _where, expression in dashboard_expressions(dashboard)
            for name in metric_selectors(expression)[0] if ":" in name and not name.startswith("vllm:")}
    assert read and read <= recorded, read - recorded


def test_every_namtech_metric_the_dashboards_and_rules_read_is_documented():
    expressions = [expression for dashboard in DASHBOARDS.values()
                   for _where, expression in dashboard_expressions(dashboard)]
    # The role's variables as plain values: a range selector's (_range) as a range, the others as a number.
    template = re.sub(r"\[\[ *_prometheus_\w+_range *\]\]", "[5m]", RULES_TEMPLATE.read_text(encoding="utf-8"))
    rules = yaml.safe_load(re.sub(r"\[\[.*?\]\]", "1", template))
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    read = {name for expression in expressions for name in metric_selectors(expression)[0]}
    documented = MONITORING_DOC.read_text(encoding="utf-8")
    names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in read if name.startswith("namtech_")}
    assert sorted(name for name in names if "`%s`" % name not in documented) == []


@pytest.mark.parametrize("expression, names, regexes", [
    ('sum by (le, node) (rate(namtech_llm_canary_ttft_seconds_bucket{tier=~".*"}[5m]))',
     {"namtech_llm_canary_ttft_seconds_bucket"}, set()),
    ('max by (node) (namtech_llm_up) == 1 or on (node) group_left up{job="vllm"} offset 2d > bool 0.5e3',
     {"namtech_llm_up", "up"}, set()),
    ('label_replace(namtech:engine_concurrency, "node", "$1", "server", "(.*)") / scalar(time())',
     {"namtech:engine_concurrency"}, set()),
    ('100 * max({__name__=~"vllm:(gpu|kv)_cache_usage_perc",node="ai1"}) unless vllm:num_requests_waiting',
     {"vllm:num_requests_waiting"}, {"vllm:(gpu|kv)_cache_usage_perc"}),
])
def test_metric_selectors_finds_the_metrics_an_expression_reads(expression, names, regexes):
    assert metric_selectors(expression) == (names, regexes)


def test_selectors_keep_the_matchers_and_leave_out_ranges_offsets_and_groupings():
    expression = ('sum by (node) (rate(x_total{code=~"5..", node="$node"}[5m] offset 1h)) / on (node) group_left '
                  'max({__name__=~"a|b", job="j"}) and label_replace(y, "n", "$1", "s", "(.*)")')
    assert selectors(expression) == ['x_total{code=~"5..", node="$node"}', '{__name__=~"a|b", job="j"}', "y"]


def test_substitute_variables_fills_in_both_forms_and_refuses_unknown_ones():
    assert substitute_variables('label_replace(rate(x{node="$node"}[${__rate_interval}]), "a", "$1", "b", "(.*)")',
                                SYNTAX_CHECK_VALUES) == 'label_replace(rate(x{node="ai1"}[5m]), "a", "$1", "b", "(.*)")'
    with pytest.raises(KeyError):
        substitute_variables("x{node=\"$host\"}", SYNTAX_CHECK_VALUES)


def test_the_provisioned_data_source_has_the_uid_the_dashboards_use(tmp_path):
    path = render_role_template(tmp_path, "grafana", "datasources.yml.j2", MONITORING, "mon1")
    datasources = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    assert datasources == [{
        "name": "Prometheus (namtech)", "uid": DATASOURCE["uid"], "type": "prometheus", "access": "proxy",
        "url": "http://10.0.0.20:9090", "isDefault": True, "editable": False,
        "jsonData": {"httpMethod": "POST", "prometheusType": "Prometheus", "timeInterval": "15s"}}]


def test_a_prometheus_login_and_ca_go_to_the_data_sources_secure_fields(tmp_path):
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    login = {"grafana_prometheus_url": "https://10.0.0.20:9090", "grafana_prometheus_username": "grafana",
             "grafana_prometheus_password": "pa$word: \"x\"", "grafana_prometheus_ca_certificate": ca}
    path = render_role_template(tmp_path, "grafana", "datasources.yml.j2", MONITORING, "mon1", extra_vars=login)
    datasource = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"][0]
    assert (datasource["url"], datasource["basicAuth"], datasource["basicAuthUser"]) == (
        "https://10.0.0.20:9090", True, "grafana")
    assert datasource["jsonData"]["tlsAuthWithCACert"] is True
    # Grafana expands $NAME in provisioning files; $$ is its literal $.
    assert datasource["secureJsonData"] == {"basicAuthPassword": 'pa$$word: "x"', "tlsCACert": ca.strip()}


def test_the_dashboard_provider_reads_the_directory_the_role_fills(tmp_path):
    path = render_role_template(tmp_path, "grafana", "dashboards.yml.j2", MONITORING, "mon1",
                                extra_vars={"grafana_dashboards_folder": "AI: serving"})
    provider = yaml.safe_load(path.read_text(encoding="utf-8"))["providers"][0]
    assert provider["options"]["path"] == ROLE_VARS["_grafana_dashboards_dir"]
    assert provider["folder"] == "AI: serving"
    assert (provider["allowUiUpdates"], provider["disableDeletion"]) == (False, True)


def test_grafana_listens_privately_never_calls_home_and_quotes_its_secrets(tmp_path):
    secrets = {"grafana_admin_password": "p#ss;word with spaces", "grafana_secret_key": "k3y#1"}
    path = render_role_template(tmp_path, "grafana", "grafana.ini.j2", MONITORING, "mon1", extra_vars=secrets)
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), inline_comment_prefixes=None)
    ini.read_string(path.read_text(encoding="utf-8"))
    assert (ini["server"]["http_addr"], ini["server"]["http_port"]) == ("10.0.0.20", "3000")
    assert ini["server"]["root_url"] == "http://10.0.0.20:3000/"
    assert ini["security"]["admin_password"] == '"""p#ss;word with spaces"""'
    assert ini["security"]["secret_key"] == '"""k3y#1"""'
    assert ini["security"]["cookie_secure"] == "false"
    assert all(ini["analytics"][key] == "false" for key in ini["analytics"])
    assert ini["paths"]["provisioning"] == "/etc/grafana/provisioning"
    assert ini["dashboards"]["default_home_dashboard_path"] == ROLE_VARS["_grafana_dashboards_dir"] + "/overview.json"


def test_an_https_root_url_makes_cookies_secure_and_an_empty_secret_key_is_left_out(tmp_path):
    path = render_role_template(tmp_path, "grafana", "grafana.ini.j2", MONITORING, "mon1",
                                extra_vars={"grafana_root_url": "https://grafana.example.com/"})
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), inline_comment_prefixes=None)
    ini.read_string(path.read_text(encoding="utf-8"))
    assert ini["security"]["cookie_secure"] == "true"
    assert "secret_key" not in ini["security"]
