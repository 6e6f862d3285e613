"""The cost model (plugins/module_utils/tco.py) on cases computed by hand, the refusals of bad input, and the
default Prometheus queries evaluated by promtool on series whose answer is known."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from ansible_collections.namtech.internal_ai.plugins.module_utils import tco

HOURS = 730.56  # 30.44 days x 24 h
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus: make bootstrap)")


def box_hosts():
    return [{"name": "ai1", "group": "ai_nodes", "hardware_price": 3600, "amortisation_months": 36,
             "power_idle_watts": 20, "power_load_watts": 120, "maintenance_hours_per_month": 2}]


def box_site(**overrides):
    settings = dict(electricity_price_per_kwh=0.30, pue=1.2, maintenance_hourly_rate=60,
                    fixed_costs_per_month=[{"name": "rack", "amount": 50}])
    settings.update(overrides)
    return tco.Site("EUR", **settings)


LARGE_USD = {"provider": "cloudA", "model": "large", "input_price_per_million": 2.5, "output_price_per_million": 10,
             "currency": "USD"}


def report_for(*, hosts=None, usage=None, readings=None, site=None, money=None, rows=(LARGE_USD,), plan=None,
               default_share=tco.DEFAULT_INPUT_SHARE):
    parsed, _warnings = tco.parse_hosts(box_hosts() if hosts is None else hosts)
    return tco.build_report(
        site=site or box_site(), money=money or tco.Money("EUR", {"USD": 0.9}), hosts=parsed,
        cloud_rows=tco.parse_cloud_prices(list(rows)),
        usage=tco.parse_usage([] if usage is None else usage),
        readings={"ai1": tco.PowerReading(utilisation=0.3)} if readings is None else readings,
        plan=plan, default_share=default_share, generated_at="2026-07-01T00:00:00Z", report_date="2026-07-01")


USAGE_80M = [{"model": "assistant", "prompt_tokens": 60e6, "generated_tokens": 20e6, "requests": 90000,
              "node": "ai1"}]


# -- hand-computed cases ------------------------------------------------------------------------------------

def test_one_box_with_usage_hand_computed():
    report = report_for(usage=USAGE_80M)
    tier = report["tiers"][0]
    host = tier["hosts"][0]
    # Power between idle and load at the measured 30 % utilisation: 20 + 0.3 x (120 - 20) = 50 W.
    assert host["power"]["watts"] == 50.0 and host["power"]["source"] == "interpolated"
    # 50 W x PUE 1.2 x 730.56 h / 1000 = 43.8336 kWh; x 0.30 EUR = 13.15008 EUR.
    assert host["energy_kwh_per_month"] == pytest.approx(43.8336)
    assert host["monthly"] == pytest.approx({"amortisation": 100.0,  # 3600 EUR / 36 months
                                             "power": 13.15008,
                                             "maintenance": 120.0,  # 2 h x 60 EUR
                                             "fixed": 0.0,
                                             "total": 233.15008})
    # The tier adds the rack: 233.15008 + 50 = 283.15008 EUR.
    assert tier["monthly"] == pytest.approx({"amortisation": 100.0, "power": 13.15008, "maintenance": 120.0,
                                             "fixed": 50.0, "total": 283.15008})
    # 283.15008 EUR / 80 M tokens = 3.539376 EUR per million.
    assert tier["cost_per_million_tokens"] == pytest.approx(3.539376)
    # 100 / 283.15008 = 0.3531696, 13.15008 / 283.15008 = 0.0464421, 120 / 283.15008 = 0.4238035,
    # 50 / 283.15008 = 0.1765848.
    assert tier["shares"] == pytest.approx({"amortisation": 0.3531696, "power": 0.0464421, "maintenance": 0.4238035,
                                            "fixed": 0.1765848}, abs=1e-6)
    # Idle power 20 W x 1.2 x 730.56 / 1000 x 0.30 = 5.260032 EUR is fixed; the other 7.890048 EUR over 80 M
    # tokens is 0.0986256 EUR per million. Fixed part of the line: 283.15008 - 7.890048 = 275.260032.
    assert tier["line"] == pytest.approx({"fixed_per_month": 275.260032, "variable_per_million_tokens": 0.098626},
                                         abs=1e-6)
    comparison = tier["comparisons"][0]
    # 2.5 and 10 USD x 0.9 = 2.25 and 9 EUR; blended at 60/80 = 75 % input: 0.75 x 2.25 + 0.25 x 9 = 3.9375.
    assert comparison["blended_price_per_million"] == pytest.approx(3.9375)
    # The bill at usage: 60 x 2.25 + 20 x 9 = 315 EUR; on-prem saves 315 - 283.15008 = 31.84992.
    assert comparison["monthly_cost_at_usage"] == pytest.approx(315.0)
    assert comparison["on_prem_saving_at_usage"] == pytest.approx(31.84992)
    assert comparison["cheaper_at_usage"] == "on-prem"
    # Break-even: 275.260032 / (3.9375 - 0.0986256) x 1e6 = 71,703,318 tokens a month.
    assert comparison["break_even_tokens_per_month"] == pytest.approx(71703318.035, rel=1e-9)
    assert report["assumptions"]["input_share"] == 0.75 and report["assumptions"]["input_share_source"] == "given"
    assert report["exchange_rates_used"] == ["USD"]


def test_zero_usage_reports_no_cost_per_token_and_breaks_even_at_the_default_mix():
    report = report_for(usage=[])
    tier = report["tiers"][0]
    assert tier["cost_per_million_tokens"] is None
    assert tier["hosts"][0]["cost_per_million_tokens"] is None
    # Without tokens all power counts as fixed: the line is flat at the total, 283.15008 EUR.
    assert tier["line"] == {"fixed_per_month": 283.15008, "variable_per_million_tokens": 0.0}
    comparison = tier["comparisons"][0]
    assert comparison["monthly_cost_at_usage"] == 0.0 and comparison["cheaper_at_usage"] == "cloud"
    # Default mix 75 % input: blended 3.9375 EUR; 283.15008 / 3.9375 x 1e6 = 71,911,131.43 tokens.
    assert comparison["break_even_tokens_per_month"] == pytest.approx(71911131.428571, rel=1e-9)
    assert report["assumptions"]["input_share_source"] == "default"
    assert report["warnings"] == ["no tokens were served: the cost per million tokens is n/a and the break-even "
                                  "uses an input share of 0.75"]


def test_default_input_share_changes_the_break_even_without_usage():
    report = report_for(usage=[], default_share=0.5)
    # Blended at 50 %: 0.5 x 2.25 + 0.5 x 9 = 5.625; 283.15008 / 5.625 x 1e6 = 50,337,792 tokens.
    assert report["tiers"][0]["comparisons"][0]["break_even_tokens_per_month"] == pytest.approx(50337792.0)


def test_default_input_share_must_be_a_share():
    with pytest.raises(tco.CostInputError, match=r"^default_input_share must be between 0 and 1 \(the share of "
                                                 r"input tokens\), got 1.5$"):
        report_for(usage=[], default_share=1.5)


class FakePrometheus:
    """Answers instant queries from a table of {query: [(labels, value)]}; records what was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def get_json(self, path, params=None):
        self.asked.append((path, params))
        samples = self.answers.get(params["query"], [])
        return {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": labels, "value": [float(params["time"]), str(value)]} for labels, value in samples]}}


END = 1782864000.0  # 2026-07-01T00:00:00Z
QUERIES = {"prompt_tokens": "prompt[$window]", "generated_tokens": "generated[$window]",
           "requests": "requests[$window]"}


def test_a_partial_month_window_is_extrapolated_to_30_44_days():
    prometheus = FakePrometheus({
        "prompt[7d]": [({"model": "assistant", "node": "ai1"}, 10e6), ({"model": "assistant", "node": "ai2"}, 4e6)],
        "generated[7d]": [({"model": "assistant", "node": "ai1"}, 3.5e6)],
        "requests[7d]": [({"model": "assistant", "node": "ai1"}, 7000)],
    })
    usage = tco.measure_usage(prometheus, QUERIES, "7d", END, coverage_query="")
    # 7 days of 30.44: factor 30.44 / 7 = 4.348571...; 14 M prompt tokens -> 60.88 M, 3.5 M generated -> 15.22 M.
    assert usage.factor == pytest.approx(4.348571428571)
    assert (usage.prompt_tokens, usage.generated_tokens) == (pytest.approx(60.88e6), pytest.approx(15.22e6))
    assert usage.requests == pytest.approx(30440.0)  # 7000 x 4.348571
    assert usage.in_window() == {"prompt_tokens": 14e6, "generated_tokens": 3.5e6, "requests": 7000.0}
    assert usage.window["start"] == "2026-06-24T00:00:00Z" and usage.window["end"] == "2026-07-01T00:00:00Z"
    assert usage.window["low_confidence"] is False
    assert usage.by("node") == [
        # ai1: (10 + 3.5) M x 4.348571 = 58.7057 M of 76.1 M.
        {"node": "ai1", "prompt_tokens": pytest.approx(43.485714e6), "generated_tokens": pytest.approx(15.22e6),
         "total_tokens": pytest.approx(58.705714e6), "requests": pytest.approx(30440.0),
         "share": pytest.approx(13.5 / 17.5)},
        {"node": "ai2", "prompt_tokens": pytest.approx(17.394286e6), "generated_tokens": 0.0,
         "total_tokens": pytest.approx(17.394286e6), "requests": 0.0, "share": pytest.approx(4 / 17.5)},
    ]
    assert [params["query"] for _path, params in prometheus.asked] == ["prompt[7d]", "generated[7d]", "requests[7d]"]
    assert {params["time"] for _path, params in prometheus.asked} == {"1782864000.000"}


def test_a_window_shorter_than_a_day_is_low_confidence():
    prometheus = FakePrometheus({"prompt[12h]": [({"model": "m", "node": "ai1"}, 1000)]})
    usage = tco.measure_usage(prometheus, QUERIES, "12h", END, coverage_query="")
    # 12 h of 730.56 h: x 60.88.
    assert usage.prompt_tokens == pytest.approx(60880.0)
    assert usage.window["low_confidence"] is True
    parsed, _warnings = tco.parse_hosts(box_hosts())
    report = tco.build_report(site=box_site(), money=tco.Money("EUR"), hosts=parsed, cloud_rows=[], usage=usage,
                              generated_at="now", report_date="2026-07-01")
    assert report["warnings"] == ["low confidence: the usage was measured over 12.0 hours, less than a day, and "
                                  "extrapolated to a month"]


@pytest.mark.parametrize("window, words", [("200s", "3 minutes"), ("40s", "40 seconds"), ("90m", "1.5 hours")])
def test_a_short_window_is_told_in_minutes_or_seconds_not_as_0_hours(window, words):
    usage = tco.measure_usage(FakePrometheus({"prompt[%s]" % window: [({"model": "m", "node": "ai1"}, 10)]}),
                              QUERIES, window, END, coverage_query="")
    parsed, _warnings = tco.parse_hosts(box_hosts())
    report = tco.build_report(site=box_site(), money=tco.Money("EUR"), hosts=parsed, cloud_rows=[], usage=usage,
                              generated_at="now", report_date="2026-07-01")
    assert report["warnings"] == ["low confidence: the usage was measured over %s, less than a day, and "
                                  "extrapolated to a month" % words]


def test_a_window_longer_than_the_history_is_extrapolated_from_the_history():
    prometheus = FakePrometheus({
        "min(lowest)": [({}, END - 2 * 86400)],
        "prompt[7d]": [({"model": "m", "node": "ai1"}, 1e6)],
    })
    usage = tco.measure_usage(prometheus, QUERIES, "7d", END, coverage_query="min(lowest)")
    # Data for 2 days only: 1 M tokens x 30.44 / 2 = 15.22 M.
    assert usage.prompt_tokens == pytest.approx(15.22e6)
    assert usage.window["covered_seconds"] == 172800.0
    assert usage.window["coverage_warning"] == ("Prometheus holds data only since 2026-06-29T00:00:00Z: the 7d window "
                                                "covers 48.0 hours, and the month is extrapolated from those")


def test_history_older_than_the_window_and_an_empty_database_change_nothing():
    for oldest in (END - 30 * 86400, 9.223372036854776e15):  # an empty TSDB reports the largest int64 / 1000
        prometheus = FakePrometheus({"min(lowest)": [({}, oldest)]})
        usage = tco.measure_usage(prometheus, QUERIES, "7d", END, coverage_query="min(lowest)")
        assert usage.window["covered_seconds"] == 604800 and usage.window["coverage_warning"] is None


def test_power_measured_from_several_queries_is_added_per_node_with_the_overhead():
    prometheus = FakePrometheus({
        "rapl[1d]": [({"node": "ai1"}, 42.0), ({"node": "ai2"}, 30.0)],
        "gpu[1d]": [({"node": "ai1"}, 100.0)],
        "util[1d]": [({"node": "ai1"}, 0.5), ({"node": "ai3"}, 1.7)],
    })
    readings = tco.measure_power(prometheus, ["rapl[$window]", "gpu[$window]"], "util[$window]", "1d", END)
    assert (readings["ai1"].watts, readings["ai1"].queries, readings["ai1"].utilisation) == (142.0, [1, 2], 0.5)
    assert (readings["ai2"].watts, readings["ai2"].queries) == (30.0, [1])
    assert readings["ai3"].watts is None and readings["ai3"].utilisation == 1.0  # clamped to 1
    hosts, _warnings = tco.parse_hosts([{"name": "ai1", "hardware_price": 0, "power_overhead_watts": 18}])
    power = tco.resolve_power(hosts[0], readings["ai1"])
    assert (power["watts"], power["source"], power["detail"]) == (160.0, "measured", "queries 1 + 2 + 18 W overhead")


def test_power_sources_in_order_given_measured_interpolated_load():
    hosts, _warnings = tco.parse_hosts([
        {"name": "a", "hardware_price": 0, "power_watts": 33, "power_load_watts": 100},
        {"name": "b", "hardware_price": 0, "power_idle_watts": 10, "power_load_watts": 110},
        {"name": "c", "hardware_price": 0, "power_load_watts": 70},
    ])
    measured = tco.PowerReading(watts=44.0, queries=[1], utilisation=0.9)
    assert tco.resolve_power(hosts[0], measured)["source"] == "given"
    assert tco.resolve_power(hosts[0], measured)["watts"] == 33
    assert tco.resolve_power(hosts[1], measured)["watts"] == 44.0
    # Interpolated: 10 + 0.25 x (110 - 10) = 35 W; idle 10 W of it is fixed.
    interpolated = tco.resolve_power(hosts[1], tco.PowerReading(utilisation=0.25))
    assert (interpolated["watts"], interpolated["fixed_watts"]) == (35.0, 10.0)
    assert interpolated["detail"] == "25.0 % utilisation"
    # Utilisation without an idle figure cannot interpolate: the load figure, all of it fixed.
    fallback = tco.resolve_power(hosts[2], tco.PowerReading(utilisation=0.25))
    assert (fallback["watts"], fallback["fixed_watts"], fallback["source"]) == (70, 70, "load_watts")
    # Nothing measured: the load figure is an assumption, flat even with an idle figure.
    assumed = tco.resolve_power(hosts[1], None)
    assert (assumed["watts"], assumed["fixed_watts"], assumed["source"]) == (110, 110, "load_watts")


def test_a_host_without_load_watts_nor_a_measurement_is_refused():
    hosts, _warnings = tco.parse_hosts([{"name": "lb1", "hardware_price": 0}])
    with pytest.raises(tco.CostInputError) as error:
        tco.resolve_power(hosts[0], None)
    assert str(error.value) == (
        "hosts[0] (lb1).power_load_watts is missing (inventory variable tco_power_load_watts) and there is no power "
        "measurement for this host: give its draw under load (and power_idle_watts), or power_watts, or a power query "
        "that returns its node")


def test_cloud_cheaper_than_on_prem_power_never_breaks_even_and_no_fixed_cost_breaks_even_at_zero():
    cheap = {"provider": "c", "model": "tiny", "input_price_per_million": 0.01, "output_price_per_million": 0.01,
             "currency": "EUR"}
    report = report_for(usage=USAGE_80M, rows=[cheap])
    # 0.01 EUR per million is less than the 0.0986 EUR of power per million tokens above idle.
    assert report["tiers"][0]["comparisons"][0]["break_even_tokens_per_month"] is None
    free = [{"name": "ai1", "hardware_price": 0, "power_watts": 0}]
    report = report_for(hosts=free, usage=USAGE_80M, site=box_site(fixed_costs_per_month=[]), rows=[cheap])
    assert report["tiers"][0]["comparisons"][0]["break_even_tokens_per_month"] == 0.0


# -- currencies ---------------------------------------------------------------------------------------------

def test_a_price_in_another_currency_is_converted_with_its_rate():
    hosts = box_hosts()
    hosts[0].update(hardware_price=4000, currency="USD", support_per_month=10)
    report = report_for(hosts=hosts, usage=USAGE_80M)
    # 4000 USD x 0.9 / 36 = 100 EUR; support 10 USD x 0.9 = 9 EUR.
    assert report["tiers"][0]["hosts"][0]["monthly"]["amortisation"] == pytest.approx(100.0)
    assert report["tiers"][0]["hosts"][0]["monthly"]["fixed"] == pytest.approx(9.0)


def test_a_report_in_another_currency_converts_every_amount():
    money = tco.Money("USD", {"EUR": 1.25})
    report = report_for(usage=USAGE_80M, money=money, rows=[dict(LARGE_USD)])
    # 283.15008 EUR x 1.25 = 353.9376 USD; the cloud prices stay as they are (USD).
    assert report["currency"] == "USD"
    assert report["tiers"][0]["monthly"]["total"] == pytest.approx(353.9376)
    assert report["tiers"][0]["comparisons"][0]["monthly_cost_at_usage"] == pytest.approx(350.0)  # 60x2.5 + 20x10


def test_electricity_in_another_currency_than_the_prices():
    site = box_site(electricity_price_per_kwh=0.5, electricity_currency="USD")
    report = report_for(usage=USAGE_80M, site=site)
    # 43.8336 kWh x 0.5 USD x 0.9 = 19.72512 EUR.
    assert report["tiers"][0]["monthly"]["power"] == pytest.approx(19.72512)


@pytest.mark.parametrize(("change", "message"), [
    (lambda hosts, site, rows: hosts[0].update(currency="USD"),
     "hosts[0] (ai1).hardware_price is in USD but the report is in EUR and exchange_rates has no rate for USD: add "
     "USD: <EUR for 1 USD> to exchange_rates (inventory variable tco_exchange_rates)"),
    (lambda hosts, site, rows: site.update(electricity_currency="GBP"),
     "hosts[0] (ai1).electricity_price_per_kwh is in GBP but the report is in EUR and exchange_rates has no rate for "
     "GBP: add GBP: <EUR for 1 GBP> to exchange_rates (inventory variable tco_exchange_rates)"),
    (lambda hosts, site, rows: site.update(fixed_costs_per_month=[{"name": "rack", "amount": 5, "currency": "CHF"}]),
     "fixed_costs_per_month[0] (rack).amount is in CHF but the report is in EUR and exchange_rates has no rate for "
     "CHF: add CHF: <EUR for 1 CHF> to exchange_rates (inventory variable tco_exchange_rates)"),
    (lambda hosts, site, rows: rows[0].update(currency="JPY"),
     "cloud_prices[0] (cloudA/large).input_price_per_million is in JPY but the report is in EUR and exchange_rates has "
     "no rate for JPY: add JPY: <EUR for 1 JPY> to exchange_rates (inventory variable tco_exchange_rates)"),
])
def test_an_amount_in_a_currency_without_a_rate_is_refused_naming_its_field(change, message):
    hosts, site = box_hosts(), dict(electricity_price_per_kwh=0.3, maintenance_hourly_rate=60)
    rows = [dict(LARGE_USD, currency="EUR")]
    change(hosts, site, rows)
    with pytest.raises(tco.CostInputError) as error:
        report_for(hosts=hosts, usage=USAGE_80M, site=tco.Site("EUR", **site), rows=rows, money=tco.Money("EUR"))
    assert str(error.value) == message


def test_bad_currency_codes_and_rates_are_refused():
    with pytest.raises(tco.CostInputError, match=r"^report_currency must be a three-letter ISO 4217 currency code "
                                                 r"such as EUR, USD or VND, got 'euro'$"):
        tco.Money("euro")
    with pytest.raises(tco.CostInputError, match=r"^exchange_rates.USD must be more than 0 \(EUR for 1 USD\), got 0$"):
        tco.Money("EUR", {"USD": 0})
    assert tco.Money("eur", {"usd": "0.9"}).rates == {"USD": 0.9}


# -- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"hardware_price": None},
     "hosts[0] (ai1).hardware_price is missing (inventory variable tco_hardware_price): give the purchase price (0 "
     "for a host that is paid off)"),
    ({"amortisation_months": None},
     "hosts[0] (ai1).amortisation_months is missing (inventory variable tco_amortisation_months): over how many "
     "months the hardware price is spread"),
    ({"amortisation_months": 0}, "hosts[0] (ai1).amortisation_months must be more than 0 months, got 0"),
    ({"power_load_watts": -5}, "hosts[0] (ai1).power_load_watts must be 0 or more watts, got -5"),
    ({"tco_power_idle_watts": -0.5}, "hosts[0] (ai1).power_idle_watts must be 0 or more watts, got -0.5"),
    ({"power_idle_watts": 200},
     "hosts[0] (ai1).power_idle_watts (200) is more than power_load_watts (120): idle is the draw with no work, load "
     "the draw under full work"),
    ({"hardware_price": "a lot"}, "hosts[0] (ai1).hardware_price must be a number, got 'a lot'"),
    ({"hardware_price": True}, "hosts[0] (ai1).hardware_price must be a number, got True"),
    ({"hardware_price": "{{ price }}"},
     "hosts[0] (ai1).hardware_price is an untemplated Jinja expression ('{{ price }}'): give a literal number there"),
    ({"pue": 0.8},
     "hosts[0] (ai1).pue (power usage effectiveness) must be 1.0 or more, got 0.8: it is the facility's total power "
     "over the IT equipment's power"),
    ({"currency": "dollars"},
     "hosts[0] (ai1).currency must be a three-letter ISO 4217 currency code such as EUR, USD or VND, got 'dollars'"),
    ({"name": None}, "hosts[0].name is missing: every host needs its inventory name"),
])
def test_bad_host_inputs_are_refused_naming_the_field(change, message):
    host = dict(box_hosts()[0], **change)
    with pytest.raises(tco.CostInputError) as error:
        tco.parse_hosts([host])
    assert str(error.value) == message


def test_missing_electricity_price_and_maintenance_rate_name_the_host():
    with pytest.raises(tco.CostInputError) as error:
        report_for(usage=[], site=box_site(electricity_price_per_kwh=None))
    assert str(error.value) == ("hosts[0] (ai1).electricity_price_per_kwh is missing (inventory variable "
                                "tco_electricity_price_per_kwh): give the price of a kWh site-wide (group_vars/all) "
                                "or for the host")
    with pytest.raises(tco.CostInputError) as error:
        report_for(usage=[], site=box_site(maintenance_hourly_rate=None))
    assert str(error.value) == ("hosts[0] (ai1).maintenance_hourly_rate is missing (inventory variable "
                                "tco_maintenance_hourly_rate): the host has maintenance hours, so give the hourly rate "
                                "site-wide (group_vars/all) or for the host")


def test_a_host_may_override_the_site_electricity_price():
    hosts = box_hosts()
    hosts[0]["tco_electricity_price_per_kwh"] = 0.6
    report = report_for(hosts=hosts, usage=USAGE_80M, site=box_site(electricity_price_per_kwh=None))
    assert report["tiers"][0]["monthly"]["power"] == pytest.approx(26.30016)  # 43.8336 kWh x 0.6


def test_site_variables_in_a_host_are_skipped_and_unknown_ones_are_warned_about():
    host = dict(box_hosts()[0], tco_window="30d", tco_report_dir="/tmp", tco_hardwre_price=1, ansible_host="x")
    hosts, warnings = tco.parse_hosts([host])
    assert hosts[0].get("hardware_price") == 3600
    assert len(warnings) == 2
    assert warnings[1].startswith("hosts[0] (ai1): unknown cost input 'tco_hardwre_price' ignored (a misspelt "
                                  "variable?); the known ones are tco_hardware_price, tco_amortisation_months, ")


def test_a_host_listed_twice_is_refused():
    with pytest.raises(tco.CostInputError, match=r"^hosts\[1\] \(ai1\): ai1 appears twice; list every host once$"):
        tco.parse_hosts(box_hosts() * 2)


@pytest.mark.parametrize(("row", "message"), [
    ({"output_price_per_million": None},
     "cloud_prices[0] (cloudA/large).output_price_per_million is missing: every cloud price needs its input and output "
     "price per million tokens and their currency"),
    ({"currency": ""},
     "cloud_prices[0] (cloudA/large).currency is missing: every cloud price needs its input and output price per "
     "million tokens and their currency"),
    ({"input_price_per_million": -1},
     "cloud_prices[0] (cloudA/large).input_price_per_million must be 0 or more, got -1"),
    ({"model": None}, "cloud_prices[0].model is missing"),
])
def test_bad_cloud_rows_are_refused_naming_the_field(row, message):
    with pytest.raises(tco.CostInputError) as error:
        tco.parse_cloud_prices([dict(LARGE_USD, **row)])
    assert str(error.value) == message


def test_compare_models_selects_by_model_or_provider_and_refuses_an_unknown_model():
    rows = tco.parse_cloud_prices([LARGE_USD, dict(LARGE_USD, model="mini"), dict(LARGE_USD, provider="cloudB")])
    assert [(row["provider"], row["model"]) for row in tco.select_cloud_rows(rows, ["mini"])] == [("cloudA", "mini")]
    assert [(row["provider"], row["model"]) for row in tco.select_cloud_rows(rows, ["large"])] == [
        ("cloudA", "large"), ("cloudB", "large")]
    assert [row["provider"] for row in tco.select_cloud_rows(rows, ["cloudB/large"])] == ["cloudB"]
    with pytest.raises(tco.CostInputError) as error:
        tco.select_cloud_rows(rows, ["mini", "gpt-9"])
    assert str(error.value) == ("compare_models: 'gpt-9' is not in cloud_prices (it has: cloudA/large, cloudA/mini, "
                                "cloudB/large); add a row for it or fix the name")


@pytest.mark.parametrize(("usage", "message"), [
    ([{"model": "m", "prompt_tokens": 5}], "usage[0] (m).generated_tokens is missing: give the tokens per month"),
    ([{"prompt_tokens": 5, "generated_tokens": 1}], "usage[0].model is missing: usage is given per model"),
    ([{"model": "m", "prompt_tokens": -5, "generated_tokens": 1}],
     "usage[0] (m).prompt_tokens must be 0 or more, got -5"),
])
def test_bad_usage_is_refused_naming_the_field(usage, message):
    with pytest.raises(tco.CostInputError) as error:
        tco.parse_usage(usage)
    assert str(error.value) == message


def test_fixed_costs_and_pue_are_checked():
    with pytest.raises(tco.CostInputError, match=r"^fixed_costs_per_month\[0\] \(rack\).amount must be 0 or more, "
                                                 r"got -3$"):
        box_site(fixed_costs_per_month=[{"name": "rack", "amount": -3}])
    with pytest.raises(tco.CostInputError, match=r"^pue \(power usage effectiveness\) must be 1.0 or more, got 0.5"):
        box_site(pue=0.5)


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("36h", 129600), ("1d12h", 129600), ("90m", 5400),
                                               ("1w", 604800), ("30s", 30)])
def test_prometheus_durations(text, seconds):
    assert tco.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 d", "d7", "7days", "0d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(tco.CostInputError, match=r"^window must be "):
        tco.parse_duration(text)


def test_end_times():
    assert tco.parse_end("2026-07-01T00:00:00Z", 0) == END
    assert tco.parse_end("2026-07-01T02:00:00+02:00", 0) == END
    assert tco.parse_end("1782864000", 0) == END
    assert tco.parse_end(None, 12.5) == 12.5
    with pytest.raises(tco.CostInputError, match=r"^end must be an RFC 3339 time"):
        tco.parse_end("yesterday", 0)


# -- tiers --------------------------------------------------------------------------------------------------

def named_hosts(spec):
    return tco.parse_hosts([{"name": name, "group": group, "hardware_price": 0} for name, group in spec],
                           label="planned.hosts")[0]


def test_tier_is_derived_as_the_prometheus_role_does():
    assert tco.derive_tier(named_hosts([("ai1", "ai_nodes"), ("mon1", "monitoring")])) == "box"
    assert tco.derive_tier(named_hosts([("ai1", "ai_nodes"), ("ai2", "ai_nodes")])) == "pro"
    assert tco.derive_tier(named_hosts([("ai1", "ai_nodes"), ("lb1", "loadbalancers")])) == "pro"
    assert tco.derive_tier(named_hosts([("lb1", "loadbalancers"), ("lb2", "loadbalancers")])) == "cluster"


def planned_cluster():
    hosts = [{"name": "ai%d" % number, "group": "ai_nodes", "hardware_price": 3600, "amortisation_months": 36,
              "power_idle_watts": 20, "power_load_watts": 120, "maintenance_hours_per_month": 2}
             for number in (1, 2, 3)]
    hosts += [{"name": "lb%d" % number, "group": "loadbalancers", "hardware_price": 960, "amortisation_months": 48,
               "power_load_watts": 25} for number in (1, 2)]
    return tco.Plan(tco.parse_hosts(hosts, label="planned.hosts")[0])


def test_the_planned_tier_spreads_the_measured_work_and_keeps_the_usage():
    report = report_for(usage=USAGE_80M, plan=planned_cluster())
    planned = report["tiers"][1]
    assert (planned["name"], planned["tier"]) == ("planned", "cluster")
    ai2 = planned["hosts"][1]
    # ai1's 30 % utilisation spread over 3 planned AI nodes: 10 % each, 20 + 0.1 x 100 = 30 W.
    assert ai2["power"]["watts"] == pytest.approx(30.0)
    assert ai2["power"]["detail"] == "10.0 % utilisation (current ai_nodes work over 3 hosts)"
    # Load balancers: no current group to spread from, so their load watts.
    assert planned["hosts"][3]["power"]["source"] == "load_watts"
    # AI node: 100 amortisation + 30 W x 1.2 x 730.56 / 1000 x 0.3 = 7.890048 power + 120 maintenance.
    assert ai2["monthly"]["total"] == pytest.approx(227.890048)
    # LB: 960 / 48 = 20 amortisation + 25 W x 1.2 x 730.56 / 1000 x 0.3 = 6.57504 power.
    assert planned["hosts"][3]["monthly"]["total"] == pytest.approx(26.57504)
    # 3 x 227.890048 + 2 x 26.57504 + 50 rack = 786.82022 EUR; over the same 80 M tokens: 9.835253 per million.
    assert planned["monthly"]["total"] == pytest.approx(786.82022)
    assert planned["cost_per_million_tokens"] == pytest.approx(9.835253, abs=1e-6)
    assert [group["group"] for group in planned["groups"]] == ["ai_nodes", "loadbalancers"]
    assert planned["groups"][0]["monthly"]["total"] == pytest.approx(683.670144)
    assert ai2["tokens_per_month"] is None


def test_planned_fixed_costs_replace_the_current_ones():
    plan = planned_cluster()
    plan.fixed_costs = tco.parse_fixed_costs([{"name": "rack", "amount": 200}], "EUR", "planned.fixed_costs_per_month")
    report = report_for(usage=USAGE_80M, plan=plan)
    assert report["tiers"][1]["monthly"]["fixed"] == 200.0 and report["tiers"][0]["monthly"]["fixed"] == 50.0


INVENTORY_LIST = {
    "_meta": {"hostvars": {
        "ai1": {"tco_hardware_price": 3600, "tco_amortisation_months": 36, "ansible_host": "10.0.0.1"},
        "lb1": {"tco_hardware_price": 900, "tco_amortisation_months": 48},
        "mon1": {"tco_hardware_price": 500, "tco_amortisation_months": 48},
    }},
    "all": {"children": ["ungrouped", "ai_nodes", "frontend", "monitoring"]},
    "ai_nodes": {"hosts": ["ai1"]},
    "frontend": {"children": ["loadbalancers"]},
    "loadbalancers": {"hosts": ["lb1"]},
    "monitoring": {"hosts": ["mon1", "ai1"]},
}


def test_hosts_from_an_ansible_inventory_list():
    hosts = tco.hosts_from_inventory_list(INVENTORY_LIST, ["ai_nodes", "frontend", "monitoring", "storage"])
    assert hosts == [
        {"name": "ai1", "group": "ai_nodes", "tco_hardware_price": 3600, "tco_amortisation_months": 36},
        {"name": "lb1", "group": "frontend", "tco_hardware_price": 900, "tco_amortisation_months": 48},
        {"name": "mon1", "group": "monitoring", "tco_hardware_price": 500, "tco_amortisation_months": 48},
    ]
    with pytest.raises(tco.CostInputError, match=r"^planned.inventory has no hosts in the groups storage: check the "
                                                 r"inventory path and its groups$"):
        tco.hosts_from_inventory_list(INVENTORY_LIST, ["storage"])


# -- the default queries, evaluated by promtool ---------------------------------------------------------------

def promql_case(expression, series, samples):
    return {"interval": "1m", "input_series": [{"series": name, "values": values} for name, values in series],
            "promql_expr_test": [{"expr": tco.with_window(expression, "10m"), "eval_time": "10m",
                                  "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}]}


TOKEN_SERIES = {
    "prompt_tokens": ("vllm:prompt_tokens_total", "namtech_llm_prompt_tokens_total"),
    "generated_tokens": ("vllm:generation_tokens_total", "namtech_llm_generated_tokens_total"),
    "requests": ("vllm:request_success_total", "namtech_llm_requests_total"),
}
DEFAULT_TOKEN_QUERIES = {"prompt_tokens": tco.DEFAULT_PROMPT_TOKENS_QUERY,
                         "generated_tokens": tco.DEFAULT_GENERATED_TOKENS_QUERY,
                         "requests": tco.DEFAULT_REQUESTS_QUERY}


@needs_promtool
def test_default_queries_give_what_prometheus_would_answer(tmp_path):
    cases = []
    for kind, (vllm, ollama) in TOKEN_SERIES.items():
        # Over 10 minutes: vLLM serves m1 on ai1 (1000), the Ollama meter m1 on ai1 too (200) and m2 on ai2 (500).
        # The meter's request counter also has the load balancers' health checks and failed generations, which are
        # no requests served.
        meter_labels = ',code="200",path="/api/generate"' if kind == "requests" else ""
        not_served = [('%s{model="",node="ai1",job="llm_meter",code="200",path="/api/version"}' % ollama, "0+60x10"),
                      ('%s{model="m1",node="ai1",job="llm_meter",code="500",path="/api/chat"}' % ollama, "0+3x10")]
        served = [('%s{model_name="m1",node="ai1",job="vllm",engine="0"}' % vllm, "0+100x10"),
                  ('%s{model="m1",node="ai1",job="llm_meter"%s}' % (ollama, meter_labels), "0+20x10"),
                  ('%s{model="m2",node="ai2",job="llm_meter"%s}' % (ollama, meter_labels), "0+50x10")]
        cases.append(promql_case(DEFAULT_TOKEN_QUERIES[kind], served + (not_served if kind == "requests" else []),
                                 [('{model="m1",node="ai1"}', 1200), ('{model="m2",node="ai2"}', 500)]))
    # RAPL: two packages at 3000 and 1800 J a minute are 50 + 30 W; 600 J of DRAM a minute 10 W. The core zone is
    # inside the package and is not counted again.
    rapl = [('node_rapl_package_joules_total{node="ai1",index="0"}', "0+3000x10"),
            ('node_rapl_package_joules_total{node="ai1",index="1"}', "0+1800x10"),
            ('node_rapl_dram_joules_total{node="ai1",index="0"}', "0+600x10"),
            ('node_rapl_core_joules_total{node="ai1",index="0"}', "0+2000x10")]
    cases.append(promql_case(tco.DEFAULT_POWER_QUERIES[0], rapl, [('{node="ai1"}', 80)]))
    cases.append(promql_case(tco.DEFAULT_POWER_QUERIES[1], rapl, [('{node="ai1"}', 10)]))
    cases.append(promql_case(tco.DEFAULT_POWER_QUERIES[2], [('namtech_gpu_power_watts{node="ai1",gpu="0"}', "80x10"),
                                                            ('namtech_gpu_power_watts{node="ai1",gpu="1"}', "20x10")],
                             [('{node="ai1"}', 100)]))
    # Two CPUs idle 45 s and 30 s of each minute: 1 - (0.75 + 0.5) / 2 = 0.375.
    cases.append(promql_case(tco.DEFAULT_UTILISATION_QUERY, [
        ('node_cpu_seconds_total{node="ai1",cpu="0",mode="idle"}', "0+45x10"),
        ('node_cpu_seconds_total{node="ai1",cpu="1",mode="idle"}', "0+30x10"),
        ('node_cpu_seconds_total{node="ai1",cpu="0",mode="user"}', "0+15x10"),
    ], [('{node="ai1"}', 0.375)]))
    cases.append(promql_case(tco.DEFAULT_COVERAGE_QUERY, [
        ('prometheus_tsdb_lowest_timestamp_seconds{node="mon1"}', "1700000000x10"),
        ('prometheus_tsdb_lowest_timestamp_seconds{node="mon2"}', "1600000000x10"),
    ], [("{}", 1600000000)]))
    test_file = tmp_path / "tco_queries_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": cases}))
    result = subprocess.run([PROMTOOL, "test", "rules", test_file.name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
