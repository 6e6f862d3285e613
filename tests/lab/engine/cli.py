"""The ``ollama`` command line: ``serve`` runs the engine, the other commands talk to it over HTTP."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

from . import logs
from .core import CRASH_EXIT_CODE, Engine, EngineConfig, parse_ollama_host
from .faults import Faults
from .version import VERSION

CONNECT_ERROR = "could not connect to ollama server, run 'ollama serve' to start it"


class CliError(Exception):
    """Printed as ``Error: ...`` with exit status 1, like the real CLI."""


class Client:
    def __init__(self, environ: dict[str, str]) -> None:
        host, port = parse_ollama_host(environ.get("OLLAMA_HOST"))
        host = f"[{host}]" if ":" in host else host
        self.base = f"http://{host}:{port}"

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 600.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise CliError(_error_text(exc.read(), exc.code)) from None
        except (urllib.error.URLError, OSError):
            raise CliError(CONNECT_ERROR) from None

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        with self.request(method, path, body) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}

    def stream(self, path: str, body: dict) -> Iterator[dict]:
        with self.request("POST", path, body) as response:
            for line in response:
                if line.strip():
                    part = json.loads(line)
                    if part.get("error"):
                        raise CliError(part["error"])
                    yield part


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return show_version(Client(dict(os.environ)))
    if not args.command:
        parser.print_help()
        return 0
    try:
        return args.handler(args, Client(dict(os.environ)))
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ollama", description="Lab stand-in for the Ollama CLI (tests only).")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add(commands, "serve", serve, "Start the lab engine", ["start"])
    _add(commands, "list", list_models, "List models", ["ls"])
    _add(commands, "ps", list_running, "List running models")
    pull = _add(commands, "pull", pull_model, "Pull a model from a registry")
    pull.add_argument("model")
    pull.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    remove = _add(commands, "rm", remove_models, "Remove a model")
    remove.add_argument("models", nargs="+")
    copy = _add(commands, "cp", copy_model, "Copy a model")
    copy.add_argument("source")
    copy.add_argument("destination")
    show = _add(commands, "show", show_model, "Show information for a model")
    show.add_argument("model")
    for flag in ("modelfile", "template", "parameters", "license"):
        show.add_argument(f"--{flag}", action="store_true")
    run = _add(commands, "run", run_model, "Run a model with a prompt")
    run.add_argument("model")
    run.add_argument("prompt", nargs="*")
    run.add_argument("--keepalive", default=None)
    stop = _add(commands, "stop", stop_model, "Stop a running model")
    stop.add_argument("model")
    return parser


def _add(commands, name: str, handler, help_text: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, aliases=list(aliases))
    sub.set_defaults(handler=handler)
    return sub


def show_version(client: Client) -> int:
    try:
        server_version = client.json("GET", "/api/version").get("version", "")
    except CliError:
        server_version = ""
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != VERSION:
        print(f"Warning: client version is {VERSION}")
    return 0


def serve(_args: argparse.Namespace, _client: Client) -> int:
    # Imported here so that client commands start fast and never bind a socket.
    from .server import EngineServer  # noqa: PLC0415

    environ = dict(os.environ)
    logs.configure(debug=bool(environ.get("OLLAMA_DEBUG")))
    if environ.get("OLLAMA_LAB_CRASH", "").lower() in ("1", "true", "yes"):
        logging.getLogger("lab.engine").error('msg="lab fault: crashing on start (OLLAMA_LAB_CRASH)"')
        return CRASH_EXIT_CODE
    engine = Engine(EngineConfig.from_env(environ), Faults.from_env(environ))
    try:
        server = EngineServer(engine)
    except OSError as exc:
        raise CliError(f"listen tcp {engine.config.host}:{engine.config.port}: {exc.strerror}") from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.httpd.server_close()
    return 0


def list_models(_args: argparse.Namespace, client: Client) -> int:
    rows = [
        [model["name"], model["digest"][:12], human_bytes(model["size"]), since(model["modified_at"])]
        for model in client.json("GET", "/api/tags")["models"]
    ]
    print_table(["NAME", "ID", "SIZE", "MODIFIED"], rows)
    return 0


def list_running(_args: argparse.Namespace, client: Client) -> int:
    rows = []
    for model in client.json("GET", "/api/ps")["models"]:
        processor = "100% GPU" if model.get("size_vram") else "100% CPU"
        rows.append(
            [
                model["name"],
                model["digest"][:12],
                human_bytes(model["size"]),
                processor,
                str(model.get("context_length", "")),
                until(model["expires_at"]),
            ]
        )
    print_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)
    return 0


def pull_model(args: argparse.Namespace, client: Client) -> int:
    last_status = ""
    for part in client.stream("/api/pull", {"model": args.model, "insecure": args.insecure}):
        status = part.get("status", "")
        if part.get("digest"):
            if part.get("completed") == part.get("total"):
                print(f"{status}: 100% {human_bytes(part.get('total') or 0)}", flush=True)
            continue
        if status != last_status:
            print(status, flush=True)
            last_status = status
    return 0


def remove_models(args: argparse.Namespace, client: Client) -> int:
    for model in args.models:
        client.json("DELETE", "/api/delete", {"model": model})
        print(f"deleted '{model}'")
    return 0


def copy_model(args: argparse.Namespace, client: Client) -> int:
    client.json("POST", "/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def show_model(args: argparse.Namespace, client: Client) -> int:
    info = client.json("POST", "/api/show", {"model": args.model})
    for flag in ("modelfile", "template", "parameters", "license"):
        if getattr(args, flag):
            print(info.get(flag, ""))
            return 0
    details = info.get("details") or {}
    print("  Model")
    labels = (("architecture", "family"), ("parameters", "parameter_size"), ("quantization", "quantization_level"))
    for label, key in labels:
        print(f"    {label:<16}{details.get(key, '')}")
    print("\n  Capabilities")
    for capability in info.get("capabilities") or []:
        print(f"    {capability}")
    return 0


def run_model(args: argparse.Namespace, client: Client) -> int:
    prompt = " ".join(args.prompt) if args.prompt else sys.stdin.read()
    body = {"model": args.model, "prompt": prompt}
    if args.keepalive is not None:
        body["keep_alive"] = args.keepalive
    for part in client.stream("/api/generate", body):
        sys.stdout.write(part.get("response", ""))
        sys.stdout.flush()
    print()
    return 0


def stop_model(args: argparse.Namespace, client: Client) -> int:
    client.json("POST", "/api/generate", {"model": args.model, "keep_alive": 0})
    return 0


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("    ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    if value >= 10 or value == int(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def since(timestamp: str) -> str:
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(timestamp)).total_seconds()
    return f"{_duration_words(seconds)} ago" if seconds >= 1 else "Less than a second ago"


def until(timestamp: str) -> str:
    seconds = (dt.datetime.fromisoformat(timestamp) - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds > 100 * 365 * 86400:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    return f"{_duration_words(seconds)} from now"


def _duration_words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


def _error_text(raw: bytes, status: int) -> str:
    try:
        return str(json.loads(raw).get("error") or f"status {status}")
    except ValueError:
        return raw.decode(errors="replace").strip() or f"status {status}"
