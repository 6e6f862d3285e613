# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The TCO report (the dictionary ``tco.build_report`` makes) as Markdown and as one self-contained HTML page.

The HTML has its style inline and its chart as inline SVG: no script, font, style sheet or image is loaded
from anywhere, so it opens the same in a browser without network access. Both formats are built from the
same tables (``sections``), so they never disagree.
"""

from __future__ import annotations

import html
import math

CHART_WIDTH = 880
PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_BOTTOM = 96, 28, 856, 328
LEGEND_TOP = 392
LEGEND_ROW = 22
DEFAULT_X_MAX = 1e9  # one billion tokens a month when neither usage nor a break-even sets the scale
CHART_REACH = 20
LABEL_HEIGHT = 14
ON_PREM_COLOURS = {"current": "#16324f", "planned": "#7b2cbf"}
CLOUD_COLOURS = ("#e4572e", "#17a398", "#f3a712", "#3a86ff", "#8ac926", "#d62828", "#6d597a", "#ff70a6")
# Apart from the chart's colours, so a screenshot shows whether the chart itself was drawn.
CATEGORY_COLOURS = {"amortisation": "#4c6a92", "power": "#f6c85f", "maintenance": "#6fb07f", "fixed": "#ca472f"}
CATEGORY_LABELS = {"amortisation": "Amortisation", "power": "Power", "maintenance": "Maintenance",
                   "fixed": "Support and fixed costs"}
POWER_SOURCES = {"given": "given", "measured": "measured", "interpolated": "interpolated",
                 "load_watts": "load watts"}


# -- formatting ----------------------------------------------------------------------------------------------

def money(value, currency):
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        text = "{:,.0f}".format(value)
    elif abs(value) >= 1 or value == 0:
        text = "{:,.2f}".format(value)
    else:
        text = "{:.3g}".format(value)
    return "%s %s" % (text, currency)


def tokens(value):
    """Token counts the way people say them: 950, 12.5 k, 3.2 M, 1.75 B."""
    if value is None:
        return "n/a"
    for limit, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= limit:
            return ("%.3g" % (value / limit)) + suffix
    return "%d" % round(value)


def count(value):
    return "n/a" if value is None else "{:,.0f}".format(value)


def percent(value):
    return "n/a" if value is None else "%.1f %%" % (value * 100)


def watts(value):
    return "n/a" if value is None else "%.1f W" % value


def break_even(value):
    return "never" if value is None else tokens(value)


def break_even_sentence(value):
    if value is None:
        return "never breaks even (it costs less per token than on-prem power)"
    return "break-even at %s tokens per month" % tokens(value)


def tier_title(entry):
    return "%s tier (%s)" % (entry["tier"], "planned" if entry["name"] == "planned" else "current")


# -- tables shared by both formats ---------------------------------------------------------------------------

class Section:
    """A titled table (and the sentences before it): ``rows`` are lists of strings, ``numeric`` the indexes of
    right-aligned columns."""

    def __init__(self, title, headers, rows, text=(), numeric=()):
        self.title = title
        self.headers = headers
        self.rows = rows
        self.text = list(text)
        self.numeric = set(numeric)


def summary_section(report):
    currency = report["currency"]
    usage = report["usage"]["monthly"]
    rows = []
    for entry in report["tiers"]:
        monthly = entry["monthly"]
        rows.append([tier_title(entry), str(len(entry["hosts"])), money(monthly["amortisation"], currency),
                     money(monthly["power"], currency), money(monthly["maintenance"], currency),
                     money(monthly["fixed"], currency), money(monthly["total"], currency),
                     money(entry["cost_per_million_tokens"], currency)])
    text = ["Usage: %s tokens per month (%s prompt, %s generated) in %s requests, %s."
            % (tokens(usage["total_tokens"]), tokens(usage["prompt_tokens"]), tokens(usage["generated_tokens"]),
               count(usage["requests"]), usage_origin(report))]
    headers = ["Tier", "Hosts", "Amortisation", "Power", "Maintenance", "Support and fixed", "Total per month",
               "Per million tokens"]
    return Section("Monthly cost", headers, rows, text, numeric=range(1, 8))


def usage_origin(report):
    usage = report["usage"]
    window = usage["window"]
    if usage["source"] == "given":
        return "as given per month"
    return "measured by Prometheus from %s to %s (%s) and extrapolated to a month of %s days" % (
        window["start"], window["end"], window["duration"], report["assumptions"]["days_per_month"])


def cloud_section(report):
    currency = report["currency"]
    tiers = report["tiers"]
    headers = ["Provider", "Model", "Input / M", "Output / M", "Blended / M", "Bill at usage",
               "On-prem saving at usage"] + ["Break-even tokens/month (%s)" % entry["tier"] for entry in tiers]
    rows = []
    for index, comparison in enumerate(tiers[0]["comparisons"]):
        rows.append([comparison["provider"], comparison["model"],
                     money(comparison["input_price_per_million"], currency),
                     money(comparison["output_price_per_million"], currency),
                     money(comparison["blended_price_per_million"], currency),
                     money(comparison["monthly_cost_at_usage"], currency),
                     money(comparison["on_prem_saving_at_usage"], currency)]
                    + [break_even(entry["comparisons"][index]["break_even_tokens_per_month"]) for entry in tiers])
    assumptions = report["assumptions"]
    read_on = " (prices read on: %s)" % assumptions["prices_read_on"] if assumptions["prices_read_on"] else ""
    text = ["Cloud prices per million tokens, converted to %s%s. Blended: at %s input tokens (%s). Break-even: "
            "the monthly tokens at which the cloud bill equals the on-prem cost; never: the cloud costs less per "
            "token than on-prem power alone."
            % (currency, read_on, percent(assumptions["input_share"]), assumptions["input_share_source"])]
    if not rows:
        text.append("No cloud prices were given.")
    return Section("Cloud comparison", headers, rows, text, numeric=range(2, len(headers)))


def shares_section(report):
    currency = report["currency"]
    headers = ["Category"] + [tier_title(entry) for entry in report["tiers"]]
    rows = []
    for category in ("amortisation", "power", "maintenance", "fixed"):
        rows.append([CATEGORY_LABELS[category]]
                    + ["%s (%s)" % (money(entry["monthly"][category], currency), percent(entry["shares"][category]))
                       for entry in report["tiers"]])
    return Section("Where the money goes", headers, rows, numeric=range(1, len(headers)))


def hosts_section(report, entry):
    currency = report["currency"]
    current = entry["name"] == "current"
    headers = ["Host", "Group", "Power source", "Average", "kWh/month", "Amortisation", "Power", "Maintenance",
               "Support", "Total"] + (["Tokens/month", "Per M tokens"] if current else [])
    rows = []
    for host in entry["hosts"]:
        power, monthly = host["power"], host["monthly"]
        row = [host["name"], host["group"], "%s: %s" % (POWER_SOURCES[power["source"]], power["detail"]),
               watts(power["watts"]), "%.1f" % host["energy_kwh_per_month"]]
        row += [money(monthly[key], currency) for key in ("amortisation", "power", "maintenance", "fixed", "total")]
        if current:
            row += [tokens(host["tokens_per_month"]), money(host["cost_per_million_tokens"], currency)]
        rows.append(row)
    return Section("Cost per host: %s" % tier_title(entry), headers, rows, numeric=range(3, len(headers)))


def groups_section(report, entry):
    currency = report["currency"]
    headers = ["Group", "Hosts", "Amortisation", "Power", "Maintenance", "Support", "Total"]
    rows = [[group["group"], str(group["hosts"])]
            + [money(group["monthly"][key], currency)
               for key in ("amortisation", "power", "maintenance", "fixed", "total")]
            for group in entry["groups"]]
    rows += [["%s (site)" % item["name"], "", "", "", "", money(item["monthly"], currency),
              money(item["monthly"], currency)] for item in entry["fixed_costs"]]
    return Section("Cost per group: %s" % tier_title(entry), headers, rows, numeric=range(1, 7))


def usage_sections(report):
    usage = report["usage"]
    headers = ["Prompt tokens", "Generated tokens", "Total tokens", "Requests", "Share"]

    def rows(table, label, empty):
        return [[row[label] if row[label] is not None else empty, tokens(row["prompt_tokens"]),
                 tokens(row["generated_tokens"]), tokens(row["total_tokens"]), count(row["requests"]),
                 percent(row["share"])] for row in table]

    sections = [Section("Usage per model (per month)", ["Model", *headers],
                        rows(usage["per_model"], "model", "(no model label)"), numeric=range(1, 6))]
    if usage["per_node"]:
        sections.append(Section("Usage per node (per month)", ["Node", *headers],
                                rows(usage["per_node"], "node", "(no node label)"), numeric=range(1, 6)))
    return sections


def assumptions_section(report):
    assumptions = report["assumptions"]
    rates = report["exchange_rates"]
    rows = [
        ["Month", "%s days (%s hours)" % (assumptions["days_per_month"], assumptions["hours_per_month"])],
        ["Input share of tokens", "%s (%s)" % (percent(assumptions["input_share"]),
                                               assumptions["input_share_source"])],
        ["Exchange rates", ", ".join("1 %s = %s %s" % (code, rate, report["currency"])
                                     for code, rate in rates.items()) or "none"],
        ["Cloud prices read on", assumptions["prices_read_on"] or "not stated"],
        ["Report date", report["report_date"]],
        ["Generated at", report["generated_at"]],
    ]
    for entry in report["tiers"]:
        line = entry["line"]
        rows.append(["On-prem line, %s" % tier_title(entry), "%s per month + %s per million tokens" % (
            money(line["fixed_per_month"], report["currency"]),
            money(line["variable_per_million_tokens"], report["currency"]))])
    return Section("Assumptions", ["", ""], rows)


def sections(report):
    result = [summary_section(report), cloud_section(report), shares_section(report)]
    for entry in report["tiers"]:
        result += [hosts_section(report, entry), groups_section(report, entry)]
    return result + usage_sections(report) + [assumptions_section(report)]


def title(report):
    return "Total cost of ownership: %s tier, %s" % (report["tiers"][0]["tier"], report["report_date"])


# -- a few lines for a playbook's output ----------------------------------------------------------------------

def summary_lines(report):
    currency = report["currency"]
    usage = report["usage"]["monthly"]
    lines = ["Usage: %s tokens per month (%s prompt, %s generated) in %s requests, %s." % (
        tokens(usage["total_tokens"]), tokens(usage["prompt_tokens"]), tokens(usage["generated_tokens"]),
        count(usage["requests"]), usage_origin(report))]
    for entry in report["tiers"]:
        shares = ", ".join("%s %s" % (CATEGORY_LABELS[category].lower(), percent(entry["shares"][category]))
                           for category in CATEGORY_LABELS)
        lines.append("%s: %s per month (%s); %s per million tokens." % (
            tier_title(entry), money(entry["monthly"]["total"], currency), shares,
            money(entry["cost_per_million_tokens"], currency)))
        lines += ["  against %s %s: %s at this usage, %s." % (
            comparison["provider"], comparison["model"], money(comparison["monthly_cost_at_usage"], currency),
            break_even_sentence(comparison["break_even_tokens_per_month"])) for comparison in entry["comparisons"]]
    return lines + ["Warning: %s" % warning for warning in report["warnings"]]


# -- Markdown ------------------------------------------------------------------------------------------------

def md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(section):
    headers = section.headers
    lines = ["| %s |" % " | ".join(md_cell(header) for header in headers),
             "| %s |" % " | ".join("---:" if index in section.numeric else "---" for index in range(len(headers)))]
    lines += ["| %s |" % " | ".join(md_cell(cell) for cell in row) for row in section.rows]
    return lines


def render_markdown(report):
    lines = ["# %s" % title(report), ""]
    if report["warnings"]:
        lines += ["> **Warning:** %s" % md_cell(warning) for warning in report["warnings"]] + [""]
    lines += ["The chart of monthly cost against monthly tokens is in the HTML report of the same name.", ""]
    for section in sections(report):
        lines += ["## %s" % section.title, ""]
        for sentence in section.text:
            lines += [sentence, ""]
        if section.rows:
            lines += [*markdown_table(section), ""]
    return "\n".join(lines)


# -- the chart -----------------------------------------------------------------------------------------------

def nice_step(span, ticks=5):
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= raw)


def nice_axis(largest, ticks=5):
    """(axis maximum, tick step): the maximum rounded up to a whole number of round steps."""
    if not largest or largest <= 0:
        largest = 1.0
    step = nice_step(largest, ticks)
    return math.ceil(largest / step - 1e-9) * step, step


def chart_ranges(report):
    """Axes that show the measured usage and the break-even volumes near it.

    A break-even more than CHART_REACH times the measured usage (or the smallest break-even, without usage)
    would squeeze everything else against the y axis, so it stays off the chart and the legend gives it.
    """
    usage = report["usage"]["monthly"]["total_tokens"]
    volumes = [comparison["break_even_tokens_per_month"] for entry in report["tiers"]
               for comparison in entry["comparisons"] if comparison["break_even_tokens_per_month"]]
    base = usage or min(volumes, default=0)
    shown = [base] + [volume for volume in volumes if volume <= CHART_REACH * base]
    x_max, x_step = nice_axis(max(shown) * 1.25 if base > 0 else DEFAULT_X_MAX)
    on_prem_at_end = max(entry["line"]["fixed_per_month"] + entry["line"]["variable_per_million_tokens"] * x_max / 1e6
                         for entry in report["tiers"])
    y_max, y_step = nice_axis(on_prem_at_end * 1.5)
    return x_max, x_step, y_max, y_step


class Plot:
    def __init__(self, x_max, y_max):
        self.x_max = x_max
        self.y_max = y_max

    def x(self, value):
        return PLOT_LEFT + value / self.x_max * (PLOT_RIGHT - PLOT_LEFT)

    def y(self, value):
        return PLOT_BOTTOM - value / self.y_max * (PLOT_BOTTOM - PLOT_TOP)


def svg_text(x, y, text, *, anchor="middle", size=12, colour="#333", weight="normal", halo=False):
    """Text; with ``halo`` a white outline keeps it readable where it crosses a line."""
    outline = ' stroke="#ffffff" stroke-width="4" paint-order="stroke"' if halo else ""
    return ('<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d" fill="%s" font-weight="%s"%s>%s</text>'
            % (x, y, anchor, size, colour, weight, outline, html.escape(text)))


def svg_line(start, end, colour, *, width=1.0, dash=None):
    return ('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>'
            % (start[0], start[1], end[0], end[1], colour, width, ' stroke-dasharray="%s"' % dash if dash else ""))


def axis_amount(value, step):
    return "{:,.0f}".format(value) if step >= 1 else "{:g}".format(value)


def axes(plot, x_step, y_step, currency):
    parts = ['<rect x="%d" y="%d" width="%d" height="%d" fill="#fbfbfd" stroke="#c8ccd4"/>'
             % (PLOT_LEFT, PLOT_TOP, PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP)]
    for index in range(round(plot.x_max / x_step) + 1):
        value = index * x_step
        parts.append(svg_line((plot.x(value), PLOT_TOP), (plot.x(value), PLOT_BOTTOM), "#e3e6eb"))
        parts.append(svg_text(plot.x(value), PLOT_BOTTOM + 18, tokens(value)))
    for index in range(round(plot.y_max / y_step) + 1):
        value = index * y_step
        parts.append(svg_line((PLOT_LEFT, plot.y(value)), (PLOT_RIGHT, plot.y(value)), "#e3e6eb"))
        parts.append(svg_text(PLOT_LEFT - 8, plot.y(value) + 4, axis_amount(value, y_step), anchor="end"))
    parts.append(svg_text((PLOT_LEFT + PLOT_RIGHT) / 2, PLOT_BOTTOM + 42, "tokens per month", size=13))
    middle = (PLOT_TOP + PLOT_BOTTOM) / 2
    parts.append('<text x="18" y="%.1f" text-anchor="middle" font-size="13" fill="#333" transform="rotate(-90 18 '
                 '%.1f)">cost per month (%s)</text>' % (middle, middle, html.escape(currency)))
    return parts


def series_lines(report, plot):
    """The on-prem lines, one line per cloud row, and the legend entries for them."""
    parts, legend = [], []
    for entry in report["tiers"]:
        line = entry["line"]
        end = line["fixed_per_month"] + line["variable_per_million_tokens"] * plot.x_max / 1e6
        style = {"colour": ON_PREM_COLOURS[entry["name"]], "width": 3.5,
                 "dash": "10 5" if entry["name"] == "planned" else None}
        parts.append(svg_line((plot.x(0), plot.y(line["fixed_per_month"])), (plot.x(plot.x_max), plot.y(end)),
                              style["colour"], width=style["width"], dash=style["dash"]))
        total = money(entry["monthly"]["total"], report["currency"])
        legend.append(("On-prem, %s: %s per month" % (tier_title(entry), total), style))
    for index, comparison in enumerate(report["tiers"][0]["comparisons"]):
        style = {"colour": CLOUD_COLOURS[index % len(CLOUD_COLOURS)], "width": 2.0, "dash": None}
        end = comparison["blended_price_per_million"] * plot.x_max / 1e6
        parts.append(svg_line((plot.x(0), plot.y(0)), (plot.x(plot.x_max), plot.y(end)), style["colour"],
                              width=style["width"]))
        legend.append(("%s %s: %s per million tokens%s" % (
            comparison["provider"], comparison["model"],
            money(comparison["blended_price_per_million"], report["currency"]),
            off_chart_break_evens(report, index, plot)), style))
    return parts, legend


def off_chart_break_evens(report, index, plot):
    """The break-even volumes of one cloud row that the chart does not reach, for its legend entry."""
    beyond = ["%s (%s)" % (tokens(entry["comparisons"][index]["break_even_tokens_per_month"]), entry["tier"])
              for entry in report["tiers"]
              if (entry["comparisons"][index]["break_even_tokens_per_month"] or 0) > plot.x_max]
    return "; break-even beyond the chart: %s" % ", ".join(beyond) if beyond else ""


def break_even_marks(report, plot):
    parts, labels = [], Labels()
    for entry in report["tiers"]:
        line = entry["line"]
        for index, comparison in enumerate(entry["comparisons"]):
            volume = comparison["break_even_tokens_per_month"]
            if volume is None or volume > plot.x_max:
                continue
            cost = line["fixed_per_month"] + line["variable_per_million_tokens"] * volume / 1e6
            x, y = plot.x(volume), plot.y(cost)
            colour = CLOUD_COLOURS[index % len(CLOUD_COLOURS)]
            parts.append('<circle cx="%.1f" cy="%.1f" r="6" fill="#ffffff" stroke="%s" stroke-width="3"/>'
                         % (x, y, colour))
            text = "break-even %s" % tokens(volume)
            anchor = "end" if x > PLOT_RIGHT - 120 else "start"
            left = x - 10 - 6.5 * len(text) if anchor == "end" else x + 10
            label_y = labels.place(left, left + 6.5 * len(text), y + 4)
            parts.append(svg_text(x + (-10 if anchor == "end" else 10), label_y, text, anchor=anchor, size=11,
                                  colour=colour, weight="bold", halo=True))
    return parts


class Labels:
    """Places chart labels so they do not cover each other: a label moves down (or up at the bottom) until free."""

    def __init__(self):
        self.boxes = []

    def place(self, left, right, y):
        step = LABEL_HEIGHT if y < PLOT_BOTTOM - 3 * LABEL_HEIGHT else -LABEL_HEIGHT
        while any(left < box_right and box_left < right and abs(y - box_y) < LABEL_HEIGHT
                  for box_left, box_right, box_y in self.boxes):
            y += step
        self.boxes.append((left, right, y))
        return y


def usage_mark(report, plot):
    usage = report["usage"]["monthly"]["total_tokens"]
    if not usage:
        return [svg_text(PLOT_LEFT + 8, PLOT_TOP + 16, "no tokens measured", anchor="start", size=11,
                         colour="#555")]
    x = plot.x(usage)
    anchor = "end" if x > PLOT_RIGHT - 160 else "start"
    return [svg_line((x, PLOT_TOP), (x, PLOT_BOTTOM), "#555555", width=1.5, dash="4 4"),
            svg_text(x + (-6 if anchor == "end" else 6), PLOT_TOP + 16, "measured: %s tokens/month" % tokens(usage),
                     anchor=anchor, size=11, colour="#333", weight="bold", halo=True)]


def legend_parts(legend):
    parts = []
    for index, (label, style) in enumerate(legend):
        x, y = PLOT_LEFT, LEGEND_TOP + index * LEGEND_ROW
        parts.append(svg_line((x, y - 4), (x + 28, y - 4), style["colour"], width=style["width"], dash=style["dash"]))
        parts.append(svg_text(x + 36, y, label, anchor="start", size=12))
    return parts


def render_chart(report):
    """Monthly cost against monthly tokens, as inline SVG."""
    x_max, x_step, y_max, y_step = chart_ranges(report)
    plot = Plot(x_max, y_max)
    lines, legend = series_lines(report, plot)
    height = LEGEND_TOP + len(legend) * LEGEND_ROW
    parts = ['<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 %d %d" width="%d" '
             'height="%d">' % (CHART_WIDTH, height, CHART_WIDTH, height),
             '<title id="chart-title">Monthly cost against monthly tokens: on-prem and cloud</title>',
             '<defs><clipPath id="plot-area"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath></defs>'
             % (PLOT_LEFT, PLOT_TOP, PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP)]
    parts += axes(plot, x_step, y_step, report["currency"])
    parts.append('<g clip-path="url(#plot-area)">')
    parts += lines + usage_mark(report, plot) + break_even_marks(report, plot)
    parts.append("</g>")
    parts += legend_parts(legend)
    parts.append("</svg>")
    return "\n".join(parts)


# -- HTML ----------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1d232b; background: #ffffff;
       margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; color: #16324f; }
h2 { font-size: 19px; margin: 32px 0 10px; color: #16324f; border-bottom: 2px solid #e3e6eb; padding-bottom: 4px; }
p.meta { color: #555d68; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; margin: 18px 0; }
.card { flex: 1 1 160px; background: #f2f5f9; border-left: 6px solid #16324f; padding: 12px 16px; }
.card .label { font-size: 13px; color: #555d68; }
.card .value { font-size: 22px; font-weight: bold; margin-top: 4px; }
.warning { background: #fff4d6; border-left: 6px solid #f3a712; padding: 10px 14px; margin: 8px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e3e6eb; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f2f5f9; }
td.num, th.num { text-align: right; white-space: nowrap; }
svg.chart { max-width: 100%; height: auto; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
.bar { display: flex; height: 26px; margin: 6px 0 2px; border: 1px solid #c8ccd4; }
.bar span { display: block; height: 100%; }
.legend span { display: inline-block; margin-right: 16px; font-size: 13px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 5px; vertical-align: -1px; }
"""


def html_cell(section, index, cell):
    return '<td%s>%s</td>' % (' class="num"' if index in section.numeric else "", html.escape(str(cell)))


def html_table(section):
    head = "".join('<th%s>%s</th>' % (' class="num"' if index in section.numeric else "", html.escape(header))
                   for index, header in enumerate(section.headers))
    body = "".join("<tr>%s</tr>" % "".join(html_cell(section, index, cell) for index, cell in enumerate(row))
                   for row in section.rows)
    return '<div class="scroll"><table><thead><tr>%s</tr></thead><tbody>%s</tbody></table></div>' % (head, body)


def html_section(section):
    parts = ["<h2>%s</h2>" % html.escape(section.title)]
    parts += ["<p>%s</p>" % html.escape(sentence) for sentence in section.text]
    if section.rows:
        parts.append(html_table(section))
    return "\n".join(parts)


def cards(report):
    currency = report["currency"]
    current = report["tiers"][0]
    items = [("On-prem cost per month", money(current["monthly"]["total"], currency)),
             ("Tokens per month", tokens(report["usage"]["monthly"]["total_tokens"])),
             ("Cost per million tokens", money(current["cost_per_million_tokens"], currency))]
    if len(report["tiers"]) > 1:
        planned = report["tiers"][1]
        items.append(("Planned %s tier per month" % planned["tier"], money(planned["monthly"]["total"], currency)))
    return '<div class="cards">%s</div>' % "".join(
        '<div class="card"><div class="label">%s</div><div class="value">%s</div></div>'
        % (html.escape(label), html.escape(value)) for label, value in items)


def share_bars(report):
    parts = []
    for entry in report["tiers"]:
        spans = "".join('<span style="width: %.2f%%; background: %s" title="%s"></span>'
                        % ((entry["shares"][category] or 0) * 100, CATEGORY_COLOURS[category],
                           html.escape(CATEGORY_LABELS[category]))
                        for category in CATEGORY_COLOURS)
        parts.append("<p>%s</p><div class=\"bar\">%s</div>" % (html.escape(tier_title(entry)), spans))
    parts.append('<p class="legend">%s</p>' % "".join(
        '<span><i style="background: %s"></i>%s</span>' % (colour, html.escape(CATEGORY_LABELS[category]))
        for category, colour in CATEGORY_COLOURS.items()))
    return "\n".join(parts)


def render_html(report):
    all_sections = sections(report)
    body = ["<h1>%s</h1>" % html.escape(title(report)),
            '<p class="meta">All amounts in %s per month. Generated at %s.</p>'
            % (html.escape(report["currency"]), html.escape(report["generated_at"])),
            cards(report)]
    body += ['<div class="warning">%s</div>' % html.escape(warning) for warning in report["warnings"]]
    body.append(html_section(all_sections[0]))
    body += ["<h2>Monthly cost against monthly tokens</h2>",
             "<p>The on-prem cost is nearly flat: amortisation, maintenance, support and idle power do not depend "
             "on use; only power above idle grows with the tokens served. A cloud bill grows in proportion to the "
             "tokens. Where a cloud line crosses an on-prem line is the break-even volume: above it on-prem costs "
             "less. The dashed vertical line is the measured usage.</p>",
             render_chart(report)]
    body.append(html_section(all_sections[1]))
    body.append(html_section(all_sections[2]))
    body.append(share_bars(report))
    body += [html_section(section) for section in all_sections[3:]]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n%s\n</main>\n</body>\n</html>\n"
            % (html.escape(title(report)), STYLE, "\n".join(body)))
