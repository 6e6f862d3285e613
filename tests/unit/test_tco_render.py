"""The TCO report as Markdown and as self-contained HTML with its SVG chart; the HTML rendered by headless Chromium
without network access into a screenshot that shows the chart."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils import tco
from ansible_collections.namtech.internal_ai.plugins.module_utils import tco_report_render as render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SMALL_RACK = [{"name": "ai1", "group": "ai_nodes", "hardware_price": 3600, "amortisation_months": 36,
               "power_idle_watts": 20, "power_load_watts": 120, "maintenance_hours_per_month": 2}]
ROWS = [
    {"provider": "cloudA", "model": "large", "input_price_per_million": 2.5, "output_price_per_million": 10,
     "currency": "USD"},
    {"provider": "cloudA", "model": "mini", "input_price_per_million": 0.15, "output_price_per_million": 0.6,
     "currency": "USD"},
    {"provider": "cloudB", "model": "mid", "input_price_per_million": 1, "output_price_per_million": 4,
     "currency": "USD"},
]
USAGE = [{"model": "assistant", "prompt_tokens": 60e6, "generated_tokens": 20e6, "requests": 90000, "node": "ai1"}]


def make_report(usage=None, rows=None, hosts=None, planned=True):
    usage = USAGE if usage is None else usage
    rows = ROWS if rows is None else rows
    hosts = SMALL_RACK if hosts is None else hosts
    site = tco.Site("EUR", electricity_price_per_kwh=0.30, pue=1.2, maintenance_hourly_rate=60,
                    fixed_costs_per_month=[{"name": "rack", "amount": 50}])
    plan = None
    if planned:
        planned_hosts = [dict(SMALL_RACK[0], name="ai%d" % number) for number in (1, 2, 3)]
        planned_hosts += [{"name": "lb%d" % number, "group": "loadbalancers", "hardware_price": 960,
                           "amortisation_months": 48, "power_load_watts": 25} for number in (1, 2)]
        plan = tco.Plan(tco.parse_hosts(planned_hosts, label="planned.hosts")[0])
    return tco.build_report(site=site, money=tco.Money("EUR", {"USD": 0.9}), hosts=tco.parse_hosts(hosts)[0],
                            cloud_rows=tco.parse_cloud_prices(rows), usage=tco.parse_usage(usage),
                            readings={"ai1": tco.PowerReading(utilisation=0.3)}, plan=plan,
                            generated_at="2026-07-01T08:00:00Z", report_date="2026-07-01",
                            prices_read_on="2026-06-30")


# -- formatting ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [(0, "0"), (950, "950"), (12500, "12.5 k"), (3.2e6, "3.2 M"),
                                             (71703318, "71.7 M"), (1.75e9, "1.75 B"), (2e12, "2 T"), (None, "n/a")])
def test_tokens_are_written_the_way_people_say_them(value, text):
    assert render.tokens(value) == text


@pytest.mark.parametrize(("value", "text"), [(283.15008, "283 EUR"), (12345.6, "12,346 EUR"), (3.539376, "3.54 EUR"),
                                             (0, "0.00 EUR"), (0.0986256, "0.0986 EUR"), (-281.5, "-282 EUR"),
                                             (None, "n/a")])
def test_money(value, text):
    assert render.money(value, "EUR") == text


@pytest.mark.parametrize(("largest", "axis"), [(1.0, (1.0, 0.2)), (89.6e6, (100e6, 20e6)), (113.3e6, (125e6, 25e6)),
                                               (437.0, (500, 100)), (0, (1.0, 0.2))])
def test_axes_end_on_a_round_number(largest, axis):
    assert render.nice_axis(largest) == pytest.approx(axis)


# -- Markdown -----------------------------------------------------------------------------------------------

def test_markdown_has_the_tables_with_the_hand_computed_figures():
    text = render.render_markdown(make_report())
    assert text.startswith("# Total cost of ownership: box tier, 2026-07-01\n")
    # 283.15008 EUR a month, 3.539376 EUR per million tokens (tests/unit/test_tco.py computes them by hand).
    assert "| box tier (current) | 1 | 100 EUR | 13.15 EUR | 120 EUR | 50.00 EUR | 283 EUR | 3.54 EUR |" in text
    # Break-even with the planned cluster: (786.82022 - 7.890048) / (3.9375 - 0.0986256) x 1e6 = 202.9 M tokens.
    assert "| cloudA | large | 2.25 EUR | 9.00 EUR | 3.94 EUR | 315 EUR | 31.85 EUR | 71.7 M | 203 M |" in text
    # 275.260032 / (0.23625 - 0.0986256) x 1e6 = 2.0001 B tokens.
    assert "| cloudA | mini | 0.135 EUR | 0.54 EUR | 0.236 EUR | 18.90 EUR | -264 EUR | 2 B | 5.66 B |" in text
    # Planned: 3 x 3600 / 36 + 2 x 960 / 48 = 340 EUR of 786.82 EUR.
    assert "| Amortisation | 100 EUR (35.3 %) | 340 EUR (43.2 %) |" in text
    assert "| ai1 | ai_nodes | interpolated: 30.0 % utilisation | 50.0 W | 43.8 |" in text
    assert "| rack (site) |  |  |  |  | 50.00 EUR | 50.00 EUR |" in text
    assert "(prices read on: 2026-06-30)" in text
    assert "| Generated at | 2026-07-01T08:00:00Z |" in text
    assert "## Cost per host: cluster tier (planned)" in text


def test_markdown_without_usage_says_n_a_and_warns():
    text = render.render_markdown(make_report(usage=[], planned=False))
    assert "| box tier (current) | 1 | 100 EUR | 13.15 EUR | 120 EUR | 50.00 EUR | 283 EUR | n/a |" in text
    # 283.15008 / 0.23625 x 1e6 = 1.1985 B tokens.
    assert "| cloudA | mini | 0.135 EUR | 0.54 EUR | 0.236 EUR | 0.00 EUR | -283 EUR | 1.2 B |" in text
    assert "> **Warning:** no tokens were served: the cost per million tokens is n/a" in text


def test_markdown_cells_cannot_break_the_table():
    rows = [dict(ROWS[0], model="a|b")]
    assert "| cloudA | a\\|b |" in render.render_markdown(make_report(rows=rows, planned=False))


# -- HTML ---------------------------------------------------------------------------------------------------

EXTERNAL = re.compile(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?!#)""",
                      re.IGNORECASE)


def test_the_chart_colours_are_its_own():
    assert not set(render.CATEGORY_COLOURS.values()) & {*render.CLOUD_COLOURS, *render.ON_PREM_COLOURS.values()}


def test_the_html_loads_nothing_from_anywhere():
    page = render.render_html(make_report())
    assert page.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "<img" not in page.lower()
    assert page.count("<svg") == 1 and "<style>" in page


def test_the_chart_draws_one_line_per_cloud_row_the_on_prem_lines_and_the_break_evens():
    chart = render.render_chart(make_report())
    for colour in render.CLOUD_COLOURS[:3]:
        assert chart.count('stroke="%s" stroke-width="2.0"' % colour) == 2  # the line and its legend sample
    assert chart.count('stroke="%s" stroke-width="3.5"' % render.ON_PREM_COLOURS["current"]) == 2
    planned = 'stroke="%s" stroke-width="3.5" stroke-dasharray="10 5"' % render.ON_PREM_COLOURS["planned"]
    assert chart.count(planned) == 2
    # large and mid break even on the chart with both tiers; mini, at 2 B and 5.66 B, more than 20 times the usage,
    # is left off the 800 M axis and named in the legend.
    assert re.findall(r">break-even ([^<]*)<", chart) == ["71.7 M", "186 M", "203 M", "528 M"]
    assert chart.count("<circle") == 4
    assert "cloudA mini: 0.236 EUR per million tokens; break-even beyond the chart: 2 B (box), 5.66 B (cluster)" \
        in chart
    assert ">measured: 80 M tokens/month<" in chart
    assert ">800 M<" in chart and ">tokens per month<" in chart and ">cost per month (EUR)<" in chart


def test_the_chart_without_usage_still_shows_the_break_evens():
    chart = render.render_chart(make_report(usage=[], planned=False))
    assert ">no tokens measured<" in chart
    # Without usage the nearest break-even (71.9 M) sets the scale; all three are within 20 times it.
    assert re.findall(r">break-even ([^<]*)<", chart) == ["71.9 M", "1.2 B", "180 M"]
    assert ">1.5 B<" in chart


def test_the_chart_without_cloud_prices_or_costs_has_sane_axes():
    free = [{"name": "ai1", "group": "ai_nodes", "hardware_price": 0, "power_watts": 0}]
    report = make_report(usage=[], rows=[], hosts=free, planned=False)
    assert render.chart_ranges(report)[0] == render.DEFAULT_X_MAX
    assert "<svg" in render.render_html(report)


def test_user_text_is_escaped():
    rows = [dict(ROWS[0], provider="<script>alert(1)</script>", model="m&m")]
    page = render.render_html(make_report(rows=rows, planned=False))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "m&amp;m" in page


def test_summary_lines():
    lines = render.summary_lines(make_report(rows=ROWS[:1], planned=False))
    assert lines == [
        "Usage: 80 M tokens per month (60 M prompt, 20 M generated) in 90,000 requests, as given per month.",
        "box tier (current): 283 EUR per month (amortisation 35.3 %, power 4.6 %, maintenance 42.4 %, support and "
        "fixed costs 17.7 %); 3.54 EUR per million tokens.",
        "  against cloudA large: 315 EUR at this usage, break-even at 71.7 M tokens per month.",
    ]


def test_a_cloud_model_cheaper_than_on_prem_power_never_breaks_even():
    cheap = [dict(ROWS[0], model="tiny", input_price_per_million=0.01, output_price_per_million=0.01)]
    report = make_report(rows=cheap, planned=False)
    assert render.summary_lines(report)[2] == ("  against cloudA tiny: 0.72 EUR at this usage, never breaks even (it "
                                               "costs less per token than on-prem power).")
    assert "| cloudA | tiny | 0.009 EUR | 0.009 EUR | 0.009 EUR | 0.72 EUR | -282 EUR | never |" in \
        render.render_markdown(report)


# -- in a browser without network ---------------------------------------------------------------------------

def png_pixels(data):
    """(width, height, [bytes of each row, RGB or RGBA]) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour_type, _compression, _filter, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for line in range(height):
        start = line * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        unfilter(kind, row, previous, channels)
        rows.append(bytes(row))
        previous = row
    return width, height, channels, rows


def unfilter(kind, row, previous, channels):
    for index in range(len(row)):
        left = row[index - channels] if index >= channels else 0
        up = previous[index]
        upper_left = previous[index - channels] if index >= channels else 0
        if kind == 1:
            row[index] = (row[index] + left) & 0xFF
        elif kind == 2:
            row[index] = (row[index] + up) & 0xFF
        elif kind == 3:
            row[index] = (row[index] + (left + up) // 2) & 0xFF
        elif kind == 4:
            row[index] = (row[index] + paeth(left, up, upper_left)) & 0xFF


def paeth(left, up, upper_left):
    estimate = left + up - upper_left
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
    return (left, up, upper_left)[distances.index(min(distances))]


def colours_in(path):
    width, _height, channels, rows = png_pixels(path.read_bytes())
    found = {}
    for row in rows:
        for offset in range(0, width * channels, channels):
            pixel = row[offset:offset + 3]
            found[pixel] = found.get(pixel, 0) + 1
    return found


def rgb(hex_colour):
    return bytes.fromhex(hex_colour.lstrip("#"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_headless_chromium_renders_the_chart_without_network(tmp_path):
    page = tmp_path / "tco.html"
    page.write_text(render.render_html(make_report()), encoding="utf-8")
    screenshot = tmp_path / "tco.png"
    # No network for the browser: a proxy that does not exist catches anything the page would load.
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--proxy-server=127.0.0.1:9", "--user-data-dir=%s" % (tmp_path / "profile"), "--window-size=1000,1100",
         "--screenshot=%s" % screenshot, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    colours = colours_in(screenshot)
    assert len(colours) > 50, "the screenshot is nearly blank: %d colours" % len(colours)
    # The chart is there: the on-prem lines and the cloud lines in their own colours (no other part of the page uses
    # the planned tier's or the cloud lines' colours), several pixels each.
    for colour in (render.ON_PREM_COLOURS["current"], render.ON_PREM_COLOURS["planned"], *render.CLOUD_COLOURS[:3]):
        assert colours.get(rgb(colour), 0) > 30, "no %s in the screenshot" % colour
    white = colours.get(b"\xff\xff\xff", 0)
    assert white < sum(colours.values()) * 0.95
