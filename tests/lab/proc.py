"""The one way the lab runs commands: argument lists, bounded timeouts, readable errors."""

import re
import subprocess
import time
from collections.abc import Callable, Sequence

FAILURE_LINE = re.compile(r"^(fatal: |failed: |ERROR! |\[ERROR\])")
MAX_FAILURE_LINES = 20


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what failed and why."""


class LabUnavailable(LabError):
    """This machine cannot run the lab at all (not root, no podman, the kernel or runtime refuses a host)."""


def run(
    args: Sequence[str],
    *,
    timeout: float = 120,
    check: bool = True,
    input_text: str | None = None,
    input_bytes: bytes | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``args`` and return the finished process; text output unless ``input_bytes`` is given."""
    text = input_bytes is None
    try:
        done = subprocess.run(
            list(args),
            input=input_text if text else input_bytes,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env=env,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if check and done.returncode != 0:
        raise LabError(f"failed ({done.returncode}): {' '.join(args)}\n{failure_output(done, text)}")
    return done


def failure_output(done: subprocess.CompletedProcess, text: bool) -> str:
    """stderr, then the lines of stdout that say what failed (ansible-playbook prints its failures there)."""
    stdout, stderr = (done.stdout, done.stderr) if text else (
        done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
    failures = [line for line in stdout.splitlines() if FAILURE_LINE.match(line)]
    return "\n".join(part for part in [stderr.strip(), *failures[-MAX_FAILURE_LINES:]] if part)


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.5):
    """The first truthy value of ``condition``, polled every ``interval`` seconds; AssertionError (a failed test)
    when none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(interval)


def wait_until(condition: Callable[[], bool], *, deadline_s: float, what: str, interval_s: float = 0.5) -> float:
    """Poll ``condition`` until it holds; return the seconds waited or raise when the deadline passes."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            raise LabError(f"gave up after {deadline_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def changed_per_host(output: str) -> dict[str, int]:
    """``{host: changed count}`` from the PLAY RECAP of an ansible-playbook run's output."""
    recap = output.split("PLAY RECAP", 1)[-1]
    return {host: int(count) for host, count in re.findall(r"^(\S+)\s*:.*?changed=(\d+)", recap, re.MULTILINE)}
