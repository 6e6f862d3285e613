"""What an example must not do: end other than through exit_json / fail_json, let a shell or a program's option
parser see a value, or change anything outside its sandbox that the task did not point it at."""

from __future__ import annotations

import os

from hostile.payloads import MARKER, OPTION_PAYLOADS


def result_problems(result):
    code = result["exit_code"]
    if code not in (0, 1):
        return ["exit code %r (exit_json gives 0, fail_json 1)" % code]
    if not result.get("failed"):
        return [] if code == 0 else ["exit code 1 without failed=true"]
    message = result.get("msg")
    if not isinstance(message, str) or not message.strip():
        return ["failed without a message: msg=%r" % (message,)]
    if "Traceback" in message:
        return ["the message carries a traceback: %s" % message]
    return []


def injection_problems(sandbox, haproxy, args):
    problems = ["a shell ran a payload: %s exists" % MARKER] if os.path.lexists(MARKER) else []
    given_options = {text for text in leaf_strings(args) if text in OPTION_PAYLOADS}
    for argv in sandbox.calls():
        injected = [arg for arg in argv[1:] if arg in given_options]
        if injected:
            problems.append("%s got %r as an option, from a value the task gave" % (argv[0], injected))
    for data in haproxy.received:
        if data.count(b"\n") != 1 or not data.endswith(b"\n"):
            problems.append("HAProxy got more than one command in one connection: %r" % data[:300])
    return problems


def escape_problems(before, after, told):
    """Paths under or beside the sandbox that changed, other than at, under, or on the way to a path the task gave."""
    changed = [path for path in set(before) | set(after) if before.get(path) != after.get(path)]
    return ["changed outside the sandbox, not at a path the task gave: %s" % path for path in sorted(changed)
            if not any(related(path, target) for target in told)]


def related(path, told):
    """``path`` is a told path, under one, or a directory created on the way to one."""
    return path == told or path.startswith(told.rstrip("/") + "/") or told.startswith(path + "/")


def told_paths(spec, args, cwd):
    """Where the task said the module may write: path options and the values of free-form dicts, made absolute as
    Ansible would (call it in the example's environment, for ~ and $HOME)."""
    found = []
    collect_paths(spec, args, found)
    return [os.path.normpath(os.path.join(cwd, os.path.expanduser(os.path.expandvars(value))))
            for value in found if isinstance(value, str) and "\x00" not in value]


def collect_paths(spec, args, found):
    if not isinstance(args, dict):
        return
    for name, option in spec.items():
        value = args.get(name)
        kind, suboptions = option.get("type", "str"), option.get("options")
        if kind == "path" or (kind == "list" and option.get("elements") == "path"):
            found.extend(value if isinstance(value, list) else [value])
        elif suboptions and isinstance(value, dict):
            collect_paths(suboptions, value, found)
        elif suboptions and isinstance(value, list):
            for item in value:
                collect_paths(suboptions, item, found)
        elif kind == "dict" or option.get("elements") == "dict":
            found.extend(leaf_strings(value))


def leaf_strings(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in leaf_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in leaf_strings(item)]
    return []


def brief(value):
    """The arguments for a failure report, huge strings cut."""
    if isinstance(value, str) and len(value) > 200:
        return "%r...(%d characters)" % (value[:40], len(value))
    if isinstance(value, dict):
        return {key: brief(item) for key, item in value.items()}
    if isinstance(value, list):
        return [brief(item) for item in value[:10]] + (["...%d items" % len(value)] if len(value) > 10 else [])
    return value


def outcome_of(result, crash):
    """A short name for what happened, for ``--hypothesis-show-statistics``: how far the examples get."""
    if crash:
        return "crash"
    if result is None:
        return "stopped while busy"
    if not result.get("failed"):
        return "exit_json changed=%s" % result.get("changed")
    words = " ".join(str(result.get("msg")).split()[:4])[:60]
    return "fail_json: %s" % words.encode("utf-8", "backslashreplace").decode()  # hypothesis needs valid UTF-8
