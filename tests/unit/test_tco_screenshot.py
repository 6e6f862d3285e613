"""The tco_report HTML opened by headless Chromium with every network request blocked shows a report, not a blank
page; and the PNG reading that judges it, checked on small PNGs written here."""

from __future__ import annotations

import pathlib
import re
import struct
import zlib

import pytest
from lab.screenshot import ScreenshotError, decode_rows, find_chromium, png_summary, render_to_png
from loopback import raw_answer
from test_tco_report import HAND_USAGE, PLANNED_INVENTORY, ai_node, module_args

from ansible_collections.namtech.internal_ai.plugins.modules import tco_report

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="chromium is not installed (apt-get install -y chromium)")

WIDTH, HEIGHT = 1280, 2000
HTTP_URL = re.compile(r"https?://", re.IGNORECASE)
# What a page loads from elsewhere: src=, href=, CSS url(...) and @import targets.
REFERENCE = re.compile(r"""(?:\b(?:src|href)\s*=\s*|url\(\s*|@import\s+)["']?([^"')\s>]*)""", re.IGNORECASE)


@pytest.fixture
def report_html(tmp_path, run_module):
    """The HTML report of a box tier with usage given by hand and a planned cluster, as tco_report writes it."""
    args = module_args(usage=HAND_USAGE, hosts=[ai_node("ai1")], planned={"inventory": PLANNED_INVENTORY},
                       report_dir=str(tmp_path / "reports"))
    result = run_module(tco_report, args)
    assert result["exit_code"] == 0, result
    (html,) = [path for path in result["files"] if path.endswith(".html")]
    return html


def references_outside_the_file(html):
    return [target for target in REFERENCE.findall(html) if not target.startswith(("#", "data:"))]


def test_the_report_references_nothing_outside_itself(report_html):
    html = pathlib.Path(report_html).read_text(encoding="utf-8")
    assert "<svg" in html
    assert HTTP_URL.findall(html) == []
    assert references_outside_the_file(html) == []


@needs_chromium
def test_chromium_without_network_renders_the_report(report_html, tmp_path):
    summary = png_summary(render_to_png(report_html, tmp_path / "report.png", width=WIDTH, height=HEIGHT))
    assert (summary.width, summary.height) == (WIDTH, HEIGHT)
    assert summary.background == (255, 255, 255)
    assert not summary.looks_blank, summary


@needs_chromium
def test_an_empty_page_is_judged_blank_and_its_remote_background_is_never_fetched(server, tmp_path):
    """The page's background is a colourful picture from a loopback server: fetched, the page would not be blank."""
    picture = png_bytes(pattern_rows(64, 64, 3), 64)
    server.route("GET", "/background.png", raw_answer(picture, content_type="image/png"))
    page = tmp_path / "empty.html"
    page.write_text('<!DOCTYPE html><html><body style="margin:0; height:100vh; background:#fff url(%s/background.png)">'
                    "</body></html>" % server.url.rstrip("/"))
    summary = png_summary(render_to_png(page, tmp_path / "empty.png", width=WIDTH, height=HEIGHT))
    assert server.requests == []
    assert (summary.distinct_colours, summary.ink_fraction) == (1, 0.0)
    assert summary.looks_blank


# -- reading PNGs -------------------------------------------------------------------------------------------------

def paeth_predictor(left, up, up_left):
    estimate = left + up - up_left
    return min((left, up, up_left), key=lambda candidate: abs(estimate - candidate))  # ties: left, up, up_left


def filter_row(filter_type, row, prior, bpp):
    """``row`` filtered the way a PNG encoder does, for the decoder to undo."""
    def left(i):
        return row[i - bpp] if i >= bpp else 0

    def up_left(i):
        return prior[i - bpp] if i >= bpp else 0

    predictors = {0: lambda i: 0, 1: left, 2: lambda i: prior[i], 3: lambda i: (left(i) + prior[i]) // 2,
                  4: lambda i: paeth_predictor(left(i), prior[i], up_left(i))}
    return bytes([filter_type]) + bytes((row[i] - predictors[filter_type](i)) & 0xFF for i in range(len(row)))


def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(rows, width, *, colour_type=2, filter_type=0, depth=8, interlace=0):
    bpp = {2: 3, 6: 4}.get(colour_type, 1)
    prior, filtered = bytes(width * bpp), b""
    for row in rows:
        filtered += filter_row(filter_type, row, prior, bpp)
        prior = row
    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered))
            + chunk(b"IEND", b""))


def pattern_rows(width, height, bpp):
    return [bytes(((x * 37 + y * 91 + channel * 53) ^ (x * y * 7)) & 0xFF
                  for x in range(width) for channel in range(bpp)) for y in range(height)]


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4], ids=["none", "sub", "up", "average", "paeth"])
@pytest.mark.parametrize(("colour_type", "bpp"), [(2, 3), (6, 4)], ids=["rgb", "rgba"])
def test_every_row_filter_is_undone(tmp_path, colour_type, bpp, filter_type):
    rows = pattern_rows(9, 6, bpp)
    path = tmp_path / "pattern.png"
    path.write_bytes(png_bytes(rows, 9, colour_type=colour_type, filter_type=filter_type))
    assert decode_rows(path) == (9, 6, bpp, rows)


def test_the_summary_counts_colours_and_what_is_off_the_background(tmp_path):
    white, red, blue = b"\xff\xff\xff", b"\xff\x00\x00", b"\x00\x00\xff"
    rows = [white * 4, white + red + white + blue, white * 4]
    path = tmp_path / "three.png"
    path.write_bytes(png_bytes(rows, 4, filter_type=4))
    summary = png_summary(path)
    assert (summary.width, summary.height, summary.distinct_colours, summary.background) == (4, 3, 3, (255, 255, 255))
    assert summary.ink_fraction == pytest.approx(2 / 12)
    assert summary.looks_blank  # three colours are too few for a rendered page


@pytest.mark.parametrize(("options", "message"), [
    ({"depth": 16}, "unsupported PNG: bit depth 16, colour type 2 (only 8-bit RGB or RGBA is read)"),
    ({"colour_type": 3}, "unsupported PNG: bit depth 8, colour type 3 (only 8-bit RGB or RGBA is read)"),
    ({"interlace": 1}, "unsupported PNG: compression 0, filter method 0, interlace 1 (only 0, 0, 0)"),
])
def test_other_pngs_are_refused_by_name(tmp_path, options, message):
    path = tmp_path / "other.png"
    path.write_bytes(png_bytes([b"\x00" * 6], 2, **options))
    with pytest.raises(ScreenshotError, match=re.escape(message)):
        png_summary(path)


def test_a_file_that_is_not_a_png_is_refused(tmp_path):
    path = tmp_path / "page.png"
    path.write_text("<html></html>")
    with pytest.raises(ScreenshotError, match="not a PNG file"):
        png_summary(path)
