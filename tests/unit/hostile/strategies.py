"""Hypothesis strategies built from a module's argument_spec: arguments that work, with one to three options (top
level or nested) replaced by hostile values or dropped."""

from __future__ import annotations

import copy
from typing import NamedTuple
from unittest import mock

import pytest
from hypothesis import strategies as st

from hostile.payloads import (
    BAD_URLS,
    DEEP_TRAVERSAL,
    HUGE_STRINGS,
    NUL_STRINGS,
    ODD_STRINGS,
    OPTION_PAYLOADS,
    SHELL_PAYLOADS,
    SPECIAL_FLOATS,
    SPECIAL_INTS,
    SURROGATES,
    TAG,
    WRONG_TYPES,
)


class SpecCaptured(Exception):
    pass


SPECS = {}


def spec_of(module):
    """The argument_spec main() gives AnsibleModule (captured by a stand-in that stops main() right there)."""
    if module not in SPECS:
        captured = {}

        def capture(**kwargs):
            captured.update(kwargs)
            raise SpecCaptured

        with mock.patch.object(module, "AnsibleModule", capture), pytest.raises(SpecCaptured):
            module.main()
        SPECS[module] = captured["argument_spec"]
    return SPECS[module]


class Omit:
    """Drop the option (the example runs without it)."""

    def __repr__(self):
        return "<omitted>"


OMIT = Omit()


def hostile_paths(sandbox, surrogates):
    paths = [
        "../../canary/escaped",  # from the cwd, and from any directory of the sandbox, into the canary
        str(sandbox.canary / "escaped"),
        str(sandbox.canary),
        str(sandbox.canary / "passwd"),
        str(sandbox.inside / ".." / "canary" / "escaped"),
        "../../../%s-escaped" % TAG,
        DEEP_TRAVERSAL,
        "~/../../canary/escaped",
        "$HOME/../../canary/escaped",
        sandbox.path("fresh", "dir"),
        sandbox.path("file.txt", "under-a-file"),
        sandbox.path("x" * 300),
        "relative/dir",
        ".",
        "..",
    ]
    if surrogates:
        paths.append(sandbox.path("\udcff"))
    return paths


class Values:
    """Hostile and random values for an option of the argument spec, in one example's sandbox.

    Each kind of hostile value is a branch of its own, so that a rare kind (a NUL byte) is drawn as often as a
    common one.
    """

    def __init__(self, sandbox, urls):
        self.sandbox = sandbox
        self.urls = (*urls, urls[0] + "/v1", "https://" + urls[0].split("://")[1], urls[0] + "/../../%2e%2e/",
                     *BAD_URLS)
        self.nul_paths = (sandbox.path("nul\x00dir"), sandbox.path("fresh", "a\x00b"))

    def strings(self, surrogates):
        kinds = [SHELL_PAYLOADS + OPTION_PAYLOADS, ODD_STRINGS, HUGE_STRINGS, self.urls,
                 hostile_paths(self.sandbox, surrogates), NUL_STRINGS + self.nul_paths]
        if surrogates:
            kinds.append(SURROGATES)
        return st.one_of(*(st.sampled_from(kind) for kind in kinds), st.text(max_size=40))

    @staticmethod
    def wrong_types():
        return st.sampled_from(WRONG_TYPES)

    def anything(self, surrogates=True):
        scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
        nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
        return st.one_of(self.strings(surrogates), self.wrong_types(), nested)

    def for_option(self, option, surrogates):
        kind = option.get("type", "str")
        if option.get("choices") and kind != "list":
            return st.one_of(st.sampled_from(option["choices"]), self.strings(surrogates), self.wrong_types())
        builders = {
            "str": lambda: st.one_of(self.strings(surrogates), self.wrong_types()),
            "path": lambda: st.one_of(st.sampled_from(hostile_paths(self.sandbox, surrogates)),
                                      st.sampled_from(self.nul_paths), self.strings(surrogates), self.wrong_types()),
            "int": lambda: st.one_of(st.integers(), st.sampled_from(SPECIAL_INTS), st.sampled_from(SPECIAL_FLOATS),
                                     self.strings(surrogates), self.wrong_types()),
            "float": lambda: st.one_of(st.floats(), st.sampled_from(SPECIAL_FLOATS), st.integers(),
                                       self.strings(surrogates), self.wrong_types()),
            "bool": lambda: st.one_of(st.booleans(), st.sampled_from(["yes", "no", "on", "maybe", 2, -1, "", [True]]),
                                      self.wrong_types()),
            "list": lambda: self.lists(option, surrogates),
            "dict": lambda: self.dicts(option, surrogates),
        }
        return builders.get(kind, lambda: self.anything(surrogates))()

    def lists(self, option, surrogates):
        element = {"type": option.get("elements", "str"), "options": option.get("options"),
                   "choices": option.get("choices")}
        return st.one_of(st.lists(self.for_option(element, True), max_size=3), st.just(["x"] * 100),
                         self.strings(surrogates), self.wrong_types())

    def dicts(self, option, surrogates):
        free = st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(SHELL_PAYLOADS)), self.anything(),
                               max_size=3)
        if not option.get("options"):
            return st.one_of(free, self.strings(surrogates), self.wrong_types())
        known = st.fixed_dictionaries({}, optional={name: self.for_option(sub, True)
                                                    for name, sub in option["options"].items()})
        return st.one_of(known, free, self.strings(surrogates), self.wrong_types())


class Slot(NamedTuple):
    """Where in the arguments a value goes (keys and list indexes), and the spec of the option there."""

    path: tuple
    option: dict


FREE_VALUE = {"type": "any"}


def slots_of(spec, args, prefix=()):
    """Every option of ``spec`` (nested ones inside the values ``args`` has), and one past each list of dicts."""
    for name, option in spec.items():
        yield Slot((*prefix, name), option)
        value = args.get(name) if isinstance(args, dict) else None
        yield from nested_slots(option, value, (*prefix, name))


def nested_slots(option, value, path):
    suboptions = option.get("options")
    if isinstance(value, dict):
        if suboptions:
            yield from slots_of(suboptions, value, path)
        else:
            for key in value:
                yield Slot((*path, key), FREE_VALUE)
    elif isinstance(value, list) and option.get("elements") == "dict":
        for index, item in enumerate(value):
            yield from nested_slots({"options": suboptions}, item, (*path, index))
        yield Slot((*path, len(value)), {"type": "dict", "options": suboptions})


def set_at(args, path, value):
    """Put ``value`` (or drop the option, for OMIT) at ``path``; a path an earlier change removed is left alone."""
    container = args
    for key in path[:-1]:
        try:
            container = container[key]
        except (KeyError, IndexError, TypeError):
            return
    key = path[-1]
    if isinstance(container, dict):
        if value is OMIT:
            container.pop(key, None)
        else:
            container[key] = value
    elif isinstance(container, list) and isinstance(key, int) and key <= len(container):
        if value is OMIT:
            if key < len(container):
                del container[key]
        elif key == len(container):
            container.append(value)
        else:
            container[key] = value


@st.composite
def mutated_args(draw, spec, baseline, values, protected):
    """The baseline with one to three options replaced by hostile values or dropped.

    ``protected`` options are never dropped nor made empty: their default is a real system path.
    """
    args = copy.deepcopy(baseline)
    slots = [*slots_of(spec, args), Slot(("unsupported_option",), FREE_VALUE)]
    chosen = draw(st.lists(st.sampled_from(slots), min_size=1, max_size=3, unique_by=lambda slot: slot.path))
    for slot in chosen:
        logged_top_level = len(slot.path) == 1 and not slot.option.get("no_log")
        # AnsibleModule cannot log a top-level string with a surrogate (UnicodeEncodeError before the module's
        # own code runs): ansible-core's limit, not the collection's, so surrogates go only where it can take them.
        strategy = values.for_option(slot.option, surrogates=not logged_top_level)
        if slot.path in protected:
            strategy = strategy.filter(lambda value: value not in (None, ""))
        else:
            strategy = st.one_of(st.just(OMIT), strategy)
        set_at(args, slot.path, draw(strategy))
    return args
