"""Screenshots of HTML files by headless Chromium with every network request blocked, and a look at the PNG.

The PNG is decoded with the standard library only (zlib and the PNG row filters), enough for what Chromium
writes: 8-bit RGB or RGBA, not interlaced.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from itertools import accumulate

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Measured with Chromium 156 at 1280x2000: an empty white page is 1 colour with 0 % off the background; a one-host
# TCO report 1,709 colours with 25 % off it; a page holding only one <h1> line 240 colours with 0.12 % off it, which
# counts as blank here: a report that shows no more than a heading did not render.
MIN_COLOURS = 16
MIN_INK_FRACTION = 0.005

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BYTES_PER_PIXEL = {2: 3, 6: 4}  # PNG colour type: 2 truecolour (RGB), 6 truecolour with alpha (RGBA)


class ScreenshotError(RuntimeError):
    """Chromium wrote no screenshot, or the PNG is not one this module can read; the message says why."""


@dataclass(frozen=True)
class PngSummary:
    width: int
    height: int
    distinct_colours: int
    background: tuple[int, ...]
    ink_fraction: float  # share of pixels whose colour differs from the most common one

    @property
    def looks_blank(self) -> bool:
        return self.distinct_colours < MIN_COLOURS or self.ink_fraction < MIN_INK_FRACTION


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


# -- rendering ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def refusing_port():
    """A loopback port that is bound but never listens, so a connection to it is refused while this is open."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def no_network_flags(dead_proxy_port: int) -> list[str]:
    """Names resolve to nothing and every URL, loopback included, goes to a proxy that refuses connections."""
    return [
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--proxy-server=http://127.0.0.1:{dead_proxy_port}",
        "--proxy-bypass-list=<-loopback>",  # no implicit bypass: loopback goes to the dead proxy too
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
    ]


def chromium_command(chromium, html_path, png_path, *, width, height, profile_dir, dead_proxy_port) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # the sandbox refuses to run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
        f"--screenshot={png_path}",
        *no_network_flags(dead_proxy_port),
        pathlib.Path(html_path).resolve().as_uri(),
    ]


def run_bounded(command: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit code or None on timeout, stderr); Chromium's helper processes are killed with it on timeout."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               errors="replace", start_new_session=True)
    try:
        stderr = process.communicate(timeout=timeout)[1]
        return process.returncode, stderr
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        try:
            stderr = process.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:  # a helper that left the process group still holds the pipe
            process.wait()
            stderr = "(unread: a Chromium helper outside its process group kept stderr open)"
        return None, stderr


def stderr_tail(text: str, lines: int = 20) -> str:
    """The last lines of Chromium's stderr without its D-Bus complaints, which a container always causes."""
    kept = [line for line in text.strip().splitlines() if "dbus/" not in line]
    return "\n".join(kept[-lines:])


def render_to_png(html_path, png_path, width: int = 1280, height: int = 2000, timeout: float = 60) -> pathlib.Path:
    """Screenshot ``html_path`` into ``png_path`` with headless Chromium that cannot reach any network."""
    chromium = find_chromium()
    if chromium is None:
        raise ScreenshotError("no Chromium found (looked for %s); install the chromium package"
                              % ", ".join(CHROMIUM_NAMES))
    png_path = pathlib.Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile_dir, refusing_port() as dead_port:
        command = chromium_command(chromium, html_path, png_path, width=width, height=height, profile_dir=profile_dir,
                                   dead_proxy_port=dead_port)
        exit_code, stderr = run_bounded(command, timeout)
    if png_path.is_file() and png_path.stat().st_size > 0:
        return png_path
    how = "timed out after %gs" % timeout if exit_code is None else "exited with %d" % exit_code
    raise ScreenshotError("Chromium %s and wrote no screenshot of %s; its stderr ends:\n%s"
                          % (how, html_path, stderr_tail(stderr)))


# -- reading the PNG ------------------------------------------------------------------------------------------

def png_chunks(data: bytes):
    """(type, payload) for each chunk, after checking the signature."""
    if not data.startswith(PNG_SIGNATURE):
        raise ScreenshotError("not a PNG file (bad signature)")
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        yield kind, data[offset + 8:offset + 8 + length]
        offset += 12 + length  # length, type, payload, CRC


def read_header(payload: bytes) -> tuple[int, int, int]:
    """(width, height, bytes per pixel) of a PNG this module can decode; anything else is refused by name."""
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", payload)
    if depth != 8 or colour_type not in BYTES_PER_PIXEL:
        raise ScreenshotError("unsupported PNG: bit depth %d, colour type %d (only 8-bit RGB or RGBA is read)"
                              % (depth, colour_type))
    if compression != 0 or filtering != 0 or interlace != 0:
        raise ScreenshotError("unsupported PNG: compression %d, filter method %d, interlace %d (only 0, 0, 0)"
                              % (compression, filtering, interlace))
    return width, height, BYTES_PER_PIXEL[colour_type]


def bytewise_sum(left: bytes, right: bytes) -> bytes:
    """Each byte of ``left`` plus the same byte of ``right``, modulo 256, done on two big integers at once."""
    size = len(left)
    low7, high = int.from_bytes(b"\x7f" * size, "big"), int.from_bytes(b"\x80" * size, "big")
    a, b = int.from_bytes(left, "big"), int.from_bytes(right, "big")
    return (((a & low7) + (b & low7)) ^ ((a ^ b) & high)).to_bytes(size, "big")


def undo_sub(row: bytes, bpp: int) -> bytes:
    out = bytearray(len(row))
    for channel in range(bpp):
        out[channel::bpp] = bytes(value & 0xFF for value in accumulate(row[channel::bpp]))
    return bytes(out)


def undo_average(row: bytes, prior: bytes, bpp: int) -> bytes:
    out = bytearray(row)
    for i in range(len(row)):
        left = out[i - bpp] if i >= bpp else 0
        out[i] = (out[i] + ((left + prior[i]) >> 1)) & 0xFF
    return bytes(out)


def paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    to_left, to_up, to_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if to_left <= to_up and to_left <= to_up_left:
        return left
    return up if to_up <= to_up_left else up_left


def undo_paeth(row: bytes, prior: bytes, bpp: int) -> bytes:
    out = bytearray(row)
    for i in range(len(row)):
        left, up_left = (out[i - bpp], prior[i - bpp]) if i >= bpp else (0, 0)
        out[i] = (out[i] + paeth(left, prior[i], up_left)) & 0xFF
    return bytes(out)


def unfilter(filter_type: int, row: bytes, prior: bytes, bpp: int) -> bytes:
    if filter_type == 0:
        return row
    if filter_type == 1:
        return undo_sub(row, bpp)
    if filter_type == 2:
        return bytewise_sum(row, prior)
    if filter_type == 3:
        return undo_average(row, prior, bpp)
    if filter_type == 4:
        return undo_paeth(row, prior, bpp)
    raise ScreenshotError("corrupt PNG: unknown row filter %d" % filter_type)


def decode_rows(path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, the unfiltered pixel rows) of the PNG at ``path``."""
    header, compressed = None, []
    for kind, payload in png_chunks(pathlib.Path(path).read_bytes()):
        if kind == b"IHDR":
            header = read_header(payload)
        elif kind == b"IDAT":
            compressed.append(payload)
    if header is None or not compressed:
        raise ScreenshotError("corrupt PNG %s: no IHDR or no IDAT chunk" % path)
    width, height, bpp = header
    raw = zlib.decompress(b"".join(compressed))
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise ScreenshotError("corrupt PNG %s: %d bytes of pixel data for %dx%d" % (path, len(raw), width, height))
    rows, prior = [], bytes(stride)
    for start in range(0, len(raw), stride + 1):
        prior = unfilter(raw[start], raw[start + 1:start + 1 + stride], prior, bpp)
        rows.append(prior)
    return width, height, bpp, rows


def colour_counts(rows: list[bytes], bpp: int) -> collections.Counter:
    """How many pixels have each colour; identical rows (most of a page's margins) are counted once."""
    counts = collections.Counter()
    for row, repeats in collections.Counter(rows).items():
        channels = (row[channel::bpp] for channel in range(bpp))
        for colour, number in collections.Counter(zip(*channels, strict=True)).items():
            counts[colour] += number * repeats
    return counts


def png_summary(png_path) -> PngSummary:
    """Size, number of distinct colours and the share of pixels off the background colour of a PNG."""
    width, height, bpp, rows = decode_rows(png_path)
    counts = colour_counts(rows, bpp)
    background, background_pixels = counts.most_common(1)[0]
    return PngSummary(width=width, height=height, distinct_colours=len(counts), background=background,
                      ink_fraction=1 - background_pixels / (width * height))
