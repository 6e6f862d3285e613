# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Parse the Prometheus text exposition format (what ``/metrics`` endpoints answer) into samples."""

from __future__ import annotations

import math

LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}
FAMILY_SUFFIXES = ("", "_total", "_sum", "_count")


class MetricsParseError(ValueError):
    """A line of the exposition is not valid; the message names the line."""


def parse_samples(text):
    """A list of ``{"name", "labels", "value"}`` for every sample line; comments are skipped."""
    samples = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(parse_sample_line(line))
        except MetricsParseError as exc:
            raise MetricsParseError("line %d: %s: %r" % (number, exc, line[:200])) from None
    return samples


def parse_sample_line(line):
    name_end = _name_end(line)
    name = line[:name_end]
    if not name:
        raise MetricsParseError("no metric name")
    labels, rest = {}, line[name_end:]
    if rest.startswith("{"):
        labels, consumed = _parse_labels(rest)
        rest = rest[consumed:]
    fields = rest.split()
    if not fields:
        raise MetricsParseError("no value")
    return {"name": name, "labels": labels, "value": _parse_value(fields[0])}


def _name_end(line):
    for index, char in enumerate(line):
        if not (char.isalnum() or char in "_:"):
            return index
    return len(line)


def _parse_value(token):
    if token in SPECIAL_VALUES:
        return SPECIAL_VALUES[token]
    try:
        return float(token)
    except ValueError:
        raise MetricsParseError("value %r is not a number" % token) from None


def _parse_labels(text):
    """Parse ``{a="x",b="y"}`` at the start of ``text``; return the labels and the characters consumed."""
    labels, index = {}, 1
    while True:
        index = _skip_spaces_and_commas(text, index)
        if index >= len(text):
            raise MetricsParseError("unterminated label set")
        if text[index] == "}":
            return labels, index + 1
        equals = text.find("=", index)
        if equals < 0 or equals + 1 >= len(text) or text[equals + 1] != '"':
            raise MetricsParseError("label without a quoted value")
        key = text[index:equals].strip()
        value, index = _parse_quoted(text, equals + 2)
        labels[key] = value


def _skip_spaces_and_commas(text, index):
    while index < len(text) and text[index] in " ,":
        index += 1
    return index


def _parse_quoted(text, index):
    chars = []
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            chars.append(LABEL_ESCAPES.get(text[index + 1], "\\" + text[index + 1]))
            index += 2
        elif char == '"':
            return "".join(chars), index + 1
        else:
            chars.append(char)
            index += 1
    raise MetricsParseError("unterminated label value")


def select_families(samples, families):
    """``{family: [samples]}`` for the named families, matching counters' and summaries' suffixes.

    A family absent from the exposition maps to an empty list, so a caller can tell "no data".
    """
    wanted = dict((family, []) for family in families)
    for sample in samples:
        for family, matches in wanted.items():
            if any(sample["name"] == family + suffix for suffix in FAMILY_SUFFIXES):
                matches.append(sample)
    return wanted
