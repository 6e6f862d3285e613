# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Evaluation suites for LLM endpoints.

Loads and validates a suite (a YAML file of cases and checks), runs it streamed against a model and
optionally a baseline model (their requests interleaved so machine noise hits both), scores the answers,
summarises latency and throughput, and judges the candidate against thresholds. Everything here is plain
Python over the collection's API clients; the module ``llm_eval`` is a thin layer on top.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    ApiError,
    ConnectionFailed,
    MalformedResponse,
    RequestTimeout,
    excerpt,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import canonical_model_name

try:
    import yaml
except ImportError:
    yaml = None
    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    YAML_IMPORT_ERROR = None

try:
    import jsonschema
except ImportError:
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR = traceback.format_exc()
else:
    JSONSCHEMA_IMPORT_ERROR = None

HAS_YAML = yaml is not None
HAS_JSONSCHEMA = jsonschema is not None

ENGINES = ("ollama", "openai")
SUITE_FIELDS = ("name", "description", "defaults", "thresholds", "cases")
DEFAULT_FIELDS = ("repetitions", "concurrency", "warmup", "timeout", "system", "options")
CASE_FIELDS = ("id", "description", "prompt", "messages", "system", "weight", "repetitions", "options", "checks")
THRESHOLD_DEFAULTS = {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5, "max_ttft_ratio": None}
SUITE_DEFAULTS = {"repetitions": 1, "concurrency": 1, "warmup": 1, "timeout": 60.0, "system": None, "options": {}}
MAX_CONCURRENCY = 64
# The run plans every request up front: a bound keeps a typo such as 10000000 from filling the memory.
MAX_REPETITIONS = 1000
MESSAGE_ROLES = ("system", "user", "assistant")
RESERVED_OPTIONS = ("model", "messages", "stream", "stream_options")
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_FAILURES_SHOWN = 5
ANSWER_EXCERPT_CHARS = 200
DIGITS = 4


# -- small helpers -------------------------------------------------------------------------------------

def describe_value(value):
    """How a wrong value reads in an error message: its YAML type and, for scalars, the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "the boolean %s" % ("true" if value else "false")
    kinds = ((str, "the string %r"), ((int, float), "the number %r"), (list, "a list"), (dict, "a mapping"))
    for kind, text in kinds:
        if isinstance(value, kind):
            return text % (value,) if "%" in text else text
    return "a %s" % type(value).__name__


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_number(value, digits=3):
    """``0.9`` rather than ``0.900``, ``1`` rather than ``1.0``: numbers as a person writes them."""
    if value is None:
        return "unknown"
    text = "%.*f" % (digits, value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def rounded(value, digits=DIGITS):
    return None if value is None else round(value, digits)


def percentile(values, fraction):
    """The ``fraction`` quantile (0..1) of ``values``, interpolating linearly between the closest ranks.

    None for no values. The same definition as numpy's default ("linear"), so a p50 of [1, 2, 3, 4] is 2.5.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1 (got %r)" % (fraction,))
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values):
    """``{p50, p95, max}`` of ``values`` (None each when there are none)."""
    values = [value for value in values if value is not None]
    return {
        "p50": rounded(percentile(values, 0.5)),
        "p95": rounded(percentile(values, 0.95)),
        "max": rounded(max(values)) if values else None,
    }


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return rounded(numerator / denominator)


# -- suites ----------------------------------------------------------------------------------------------

class SuiteError(Exception):
    """A suite file that cannot be used. ``str()`` names the file, the case and the field at fault."""

    def __init__(self, path, where, problem):
        super().__init__("suite %s: %s: %s" % (path, where, problem))
        self.path = path
        self.where = where
        self.problem = problem


class Check:
    """One condition on one answer. ``failure(sample)`` is None when it holds, else a sentence."""

    name = ""

    def __init__(self, value):
        self.value = value

    def failure(self, sample):
        raise NotImplementedError


class TextCheck(Check):
    text_check = True

    def __init__(self, value, ignore_case=True):
        super().__init__(value)
        self.ignore_case = ignore_case

    def fold(self, text):
        return text.casefold() if self.ignore_case else text


def as_strings(value):
    return [value] if isinstance(value, str) else list(value)


class Contains(TextCheck):
    name = "contains"

    def failure(self, sample):
        missing = [text for text in as_strings(self.value) if self.fold(text) not in self.fold(sample.answer)]
        if missing:
            return "the answer does not contain %s" % ", ".join(repr(text) for text in missing)
        return None


class NotContains(TextCheck):
    name = "not_contains"

    def failure(self, sample):
        found = [text for text in as_strings(self.value) if self.fold(text) in self.fold(sample.answer)]
        if found:
            return "the answer contains %s" % ", ".join(repr(text) for text in found)
        return None


class Equals(TextCheck):
    name = "equals"

    def failure(self, sample):
        if self.fold(sample.answer.strip()) != self.fold(self.value.strip()):
            return "the answer is not %r" % self.value
        return None


class Regex(TextCheck):
    name = "regex"

    def __init__(self, value, ignore_case=True):
        super().__init__(value, ignore_case)
        self.pattern = re.compile(value, re.IGNORECASE if ignore_case else 0)

    def failure(self, sample):
        if self.pattern.search(sample.answer) is None:
            return "the answer does not match the regular expression '%s'" % self.value
        return None


def strip_code_fence(text):
    """Models often wrap JSON in a Markdown code fence (```json ... ```); the JSON is what is inside."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and "\n" in stripped:
        return stripped[stripped.index("\n") + 1:-3].strip()
    return stripped


class JsonSchema(Check):
    name = "json_schema"

    def failure(self, sample):
        try:
            document = json.loads(strip_code_fence(sample.answer))
        except ValueError as exc:
            return "the answer is not JSON (%s)" % exc
        validator = jsonschema.validators.validator_for(self.value)(self.value)
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        if not errors:
            return None
        path = "/".join(str(part) for part in errors[0].absolute_path)
        return "the answer does not match the schema: %s (at %s)" % (errors[0].message, path or "the top level")


class MinTokens(Check):
    name = "min_tokens"

    def failure(self, sample):
        if sample.tokens is None or sample.tokens < self.value:
            return "%s tokens generated, fewer than %s" % (
                "unknown" if sample.tokens is None else sample.tokens, format_number(self.value))
        return None


class MaxTtftSeconds(Check):
    name = "max_ttft_seconds"

    def failure(self, sample):
        if sample.ttft_seconds is None:
            return "no content arrived, so there is no time to first token"
        if sample.ttft_seconds > self.value:
            return "the first token came after %s s, more than %s s" % (
                format_number(sample.ttft_seconds), format_number(self.value))
        return None


class MaxSeconds(Check):
    name = "max_seconds"

    def failure(self, sample):
        if sample.seconds > self.value:
            return "the answer took %s s, more than %s s" % (format_number(sample.seconds), format_number(self.value))
        return None


class MinTokensPerSecond(Check):
    name = "min_tokens_per_second"

    def failure(self, sample):
        if sample.tokens_per_second is None:
            return "the generation speed is unknown (fewer than 2 tokens generated)"
        if sample.tokens_per_second < self.value:
            speed = format_number(sample.tokens_per_second, 1)
            return "%s tokens/s, fewer than %s" % (speed, format_number(self.value))
        return None


CHECKS = dict((kind.name, kind) for kind in (
    Contains, NotContains, Equals, Regex, JsonSchema, MinTokens, MaxTtftSeconds, MaxSeconds, MinTokensPerSecond))
CHECK_MODIFIERS = ("ignore_case",)


class Case:
    def __init__(self, *, index, case_id, messages, weight, repetitions, options, checks, description=None):
        self.index = index
        self.id = case_id
        self.messages = messages
        self.weight = weight
        self.repetitions = repetitions
        self.options = options
        self.checks = checks
        self.description = description


class Suite:
    def __init__(self, *, path, name, description, defaults, thresholds, cases):
        self.path = path
        self.name = name
        self.description = description
        self.defaults = defaults
        self.thresholds = thresholds
        self.cases = cases

    @property
    def uses_json_schema(self):
        return any(check.name == "json_schema" for case in self.cases for check in case.checks)


class SuiteReader:
    """Validates the data of one suite file; every error names the file, the case and the field."""

    def __init__(self, path):
        self.path = path
        self.case_label = None

    def fail(self, field, problem):
        parts = [self.case_label] if self.case_label else []
        if field:
            parts.append("field '%s'" % field)
        raise SuiteError(self.path, ", ".join(parts) or "the file", problem)

    def mapping(self, value, field, known):
        if not isinstance(value, dict):
            self.fail(field, "must be a mapping, got %s" % describe_value(value))
        unknown = sorted(str(key) for key in value if key not in known)
        if unknown:
            inner = "%s." % field if field else ""
            self.fail(inner + unknown[0], "unknown field '%s'; known fields: %s" % (unknown[0], ", ".join(known)))
        return value

    def string(self, value, field, allow_empty=False):
        if not isinstance(value, str):
            hint = ""
            if isinstance(value, bool):
                hint = " (quote it: YAML reads yes, no, on, off, true and false as booleans)"
            elif is_number(value):
                hint = " (quote it: '%s')" % value
            self.fail(field, "must be a string, got %s%s" % (describe_value(value), hint))
        if not allow_empty and not value.strip():
            self.fail(field, "must not be empty")
        return value

    def integer(self, value, field, minimum, maximum=None):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum or \
                (maximum is not None and value > maximum):
            bounds = "between %d and %d" % (minimum, maximum) if maximum is not None else "of at least %d" % minimum
            self.fail(field, "must be an integer %s, got %s" % (bounds, describe_value(value)))
        return value

    def number(self, value, field, minimum=0.0, maximum=None, inclusive=False):
        in_range = is_number(value) and (value >= minimum if inclusive else value > minimum) and \
            (maximum is None or value <= maximum)
        if not in_range:
            bound = "at least %s" % format_number(minimum) if inclusive else "greater than %s" % format_number(minimum)
            if maximum is not None:
                bound = "between %s and %s" % (format_number(minimum), format_number(maximum))
            self.fail(field, "must be a number %s, got %s" % (bound, describe_value(value)))
        return float(value)

    def options(self, value, field):
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field, "must be a mapping of request options, got %s" % describe_value(value))
        for key in value:
            if key in RESERVED_OPTIONS:
                self.fail("%s.%s" % (field, key), "is set by the module and cannot be an option")
        return dict(value)

    # -- the document ---------------------------------------------------------------------------------

    def suite(self, data):
        if data is None:
            raise SuiteError(self.path, "the file", "is empty; a suite needs at least a name and cases")
        self.mapping(data, "", SUITE_FIELDS)
        for required in ("name", "cases"):
            if required not in data:
                self.fail(required, "is required")
        name = self.string(data["name"], "name")
        if not SUITE_NAME.match(name):
            self.fail("name", "%r may only contain letters, digits, '.', '_' and '-' (it names report files)" % name)
        description = self.string(data["description"], "description") if data.get("description") else None
        defaults = self.defaults(data.get("defaults") or {})
        thresholds = self.thresholds(data.get("thresholds") or {})
        cases = self.cases(data["cases"], defaults)
        return Suite(path=self.path, name=name, description=description, defaults=defaults, thresholds=thresholds,
                     cases=cases)

    def defaults(self, value):
        self.mapping(value, "defaults", DEFAULT_FIELDS)
        defaults = dict(SUITE_DEFAULTS)
        readers = {
            "repetitions": lambda v, f: self.integer(v, f, 1, MAX_REPETITIONS),
            "concurrency": lambda v, f: self.integer(v, f, 1, MAX_CONCURRENCY),
            "warmup": lambda v, f: self.integer(v, f, 0),
            "timeout": self.number,
            "system": self.string,
            "options": self.options,
        }
        for key, item in value.items():
            defaults[key] = readers[key](item, "defaults.%s" % key)
        return defaults

    def thresholds(self, value):
        self.mapping(value, "thresholds", tuple(THRESHOLD_DEFAULTS))
        thresholds = {}
        for key, item in value.items():
            field = "thresholds.%s" % key
            if item is None:
                thresholds[key] = None
            elif key in ("min_score", "max_score_drop"):
                thresholds[key] = self.number(item, field, 0.0, 1.0, inclusive=True)
            else:
                thresholds[key] = self.number(item, field)
        return thresholds

    def cases(self, value, defaults):
        if not isinstance(value, list) or not value:
            self.fail("cases", "must be a non-empty list of cases, got %s" % describe_value(value))
        seen = {}
        cases = []
        for index, item in enumerate(value):
            self.case_label = "cases[%d]" % index
            case = self.case(index, item, defaults)
            if case.id in seen:
                self.fail("id", "duplicate id %r, already used by cases[%d]" % (case.id, seen[case.id]))
            seen[case.id] = index
            cases.append(case)
        self.case_label = None
        return cases

    def case(self, index, item, defaults):
        if not isinstance(item, dict):
            self.fail("", "a case must be a mapping, got %s" % describe_value(item))
        if "id" not in item:
            self.fail("id", "is required")
        case_id = self.string(item["id"], "id")
        self.case_label = "cases[%d] (id %r)" % (index, case_id)
        self.mapping(item, "", CASE_FIELDS)
        system = self.string(item["system"], "system") if "system" in item else defaults["system"]
        messages = self.messages(item, system)
        weight = self.number(item["weight"], "weight") if "weight" in item else 1.0
        repetitions = self.integer(item["repetitions"], "repetitions", 1, MAX_REPETITIONS) if "repetitions" in item \
            else defaults["repetitions"]
        options = dict(defaults["options"], **self.options(item.get("options"), "options"))
        checks = self.checks(item.get("checks"))
        description = self.string(item["description"], "description") if item.get("description") else None
        return Case(index=index, case_id=case_id, messages=messages, weight=weight, repetitions=repetitions,
                    options=options, checks=checks, description=description)

    def messages(self, item, system):
        has_prompt, has_messages = "prompt" in item, "messages" in item
        if has_prompt == has_messages:
            field = "prompt" if not has_prompt else "messages"
            self.fail(field, "a case needs either prompt or messages" if not has_prompt
                      else "give either prompt or messages, not both")
        if has_prompt:
            messages = [{"role": "user", "content": self.string(item["prompt"], "prompt")}]
        else:
            messages = self.message_list(item["messages"])
        if system is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def message_list(self, value):
        if not isinstance(value, list) or not value:
            self.fail("messages", "must be a non-empty list of {role, content}, got %s" % describe_value(value))
        messages = []
        for position, message in enumerate(value):
            field = "messages[%d]" % position
            self.mapping(message, field, ("role", "content"))
            for required in ("role", "content"):
                if required not in message:
                    self.fail("%s.%s" % (field, required), "is required")
            role = self.string(message["role"], field + ".role")
            if role not in MESSAGE_ROLES:
                self.fail(field + ".role", "must be one of %s, got %r" % (", ".join(MESSAGE_ROLES), role))
            messages.append({"role": role, "content": self.string(message["content"], field + ".content")})
        if all(message["role"] != "user" for message in messages):
            self.fail("messages", "needs at least one message with role user")
        return messages

    def checks(self, value):
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail("checks", "must be a list of checks, got %s" % describe_value(value))
        return [self.check(item, "checks[%d]" % position) for position, item in enumerate(value)]

    def check(self, item, field):
        if not isinstance(item, dict):
            self.fail(field, "a check must be a mapping such as {contains: Paris}, got %s" % describe_value(item))
        kinds = [key for key in item if key not in CHECK_MODIFIERS]
        unknown = [str(key) for key in kinds if key not in CHECKS]
        if unknown:
            self.fail(field, "unknown check '%s'; known checks: %s" % (unknown[0], ", ".join(sorted(CHECKS))))
        if len(kinds) != 1:
            self.fail(field, "needs exactly one check per item, found %s" % (", ".join(sorted(kinds)) or "none"))
        kind = kinds[0]
        value_field = "%s.%s" % (field, kind)
        if "ignore_case" in item:
            if not getattr(CHECKS[kind], "text_check", False):
                self.fail(field + ".ignore_case", "only applies to contains, not_contains, equals and regex")
            if not isinstance(item["ignore_case"], bool):
                self.fail(field + ".ignore_case", "must be true or false, got %s" % describe_value(item["ignore_case"]))
        return self.build_check(kind, item[kind], value_field, item.get("ignore_case", True))

    def build_check(self, kind, value, field, ignore_case):
        readers = {
            "contains": self.strings,
            "not_contains": self.strings,
            "equals": lambda item, where: self.string(item, where, allow_empty=True),
            "regex": self.pattern,
            "json_schema": self.schema,
            "min_tokens": lambda item, where: self.integer(item, where, 1),
        }
        checked = readers.get(kind, self.number)(value, field)
        kind_class = CHECKS[kind]
        return kind_class(checked, ignore_case) if getattr(kind_class, "text_check", False) else kind_class(checked)

    def strings(self, value, field):
        if not isinstance(value, list):
            return self.string(value, field)
        if not value:
            self.fail(field, "must be a string or a non-empty list of strings, got an empty list")
        return [self.string(text, "%s[%d]" % (field, position)) for position, text in enumerate(value)]

    def pattern(self, value, field):
        self.string(value, field)
        try:
            re.compile(value)
        except re.error as exc:
            self.fail(field, "invalid regular expression '%s': %s" % (value, exc))
        return value

    def schema(self, value, field):
        if not isinstance(value, dict):
            self.fail(field, "must be a JSON schema (a mapping), got %s" % describe_value(value))
        if HAS_JSONSCHEMA:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.exceptions.SchemaError as exc:
                self.fail(field, "is not a valid JSON schema: %s" % exc.message)
        return value


def parse_suite(data, path):
    """A ``Suite`` from the parsed YAML document of ``path``; raises ``SuiteError``."""
    return SuiteReader(path).suite(data)


def load_suite(path):
    """Read, parse and validate a suite file; raises ``SuiteError`` naming what is wrong and where."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(path, "the file", "cannot be read: %s" % exc) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else "the file"
        problem = " ".join(part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
        raise SuiteError(path, where, "invalid YAML: %s" % (problem or exc)) from None
    return parse_suite(data, path)


# -- measuring one request ---------------------------------------------------------------------------------

class AnswerTimeout(RequestTimeout):
    """The answer kept coming but was not complete within the suite's timeout."""


class Sample:
    """What one streamed request gave: the answer, its timings and token figures, or the error."""

    def __init__(self, *, answer="", ttft_seconds=None, seconds=0.0, tokens=None, tokens_per_second=None,
                 error=None, unreachable=False):
        self.answer = answer
        self.ttft_seconds = ttft_seconds
        self.seconds = seconds
        self.tokens = tokens
        self.tokens_per_second = tokens_per_second
        self.error = error
        self.unreachable = unreachable

    @property
    def ok(self):
        return self.error is None


class AnswerMeter:
    """Times one streamed answer: the first non-empty content, the end, and the content itself."""

    def __init__(self, clock, timeout):
        self.clock = clock
        self.timeout = timeout
        self.started = clock()
        self.first_content_at = None
        self.parts = []
        self.ended = None
        self.final = None
        self.usage = None

    def watch(self, stream):
        """Yield the stream's events; stop it once the answer has taken longer than the suite allows."""
        try:
            for event in stream:
                yield event
                if self.clock() - self.started > self.timeout:
                    raise AnswerTimeout("the answer was not complete after the suite's timeout of %s s (%d content "
                                        "chunks received)" % (format_number(self.timeout), len(self.parts)))
            self.ended = self.clock()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def content(self, text):
        if isinstance(text, str) and text:
            if self.first_content_at is None:
                self.first_content_at = self.clock()
            self.parts.append(text)

    def sample(self, tokens, tokens_per_second):
        ended = self.ended if self.ended is not None else self.clock()
        ttft = None if self.first_content_at is None else self.first_content_at - self.started
        return Sample(answer="".join(self.parts), ttft_seconds=ttft, seconds=ended - self.started, tokens=tokens,
                      tokens_per_second=tokens_per_second)

    def failed(self, error):
        return Sample(answer="".join(self.parts), seconds=self.clock() - self.started, error=str(error),
                      unreachable=isinstance(error, ConnectionFailed))

    def decode_rate(self, tokens):
        """Tokens per second after the first one: the first token's time is part of the TTFT."""
        if tokens is None or tokens < 2 or self.first_content_at is None:
            return None
        seconds = (self.ended if self.ended is not None else self.clock()) - self.first_content_at
        return (tokens - 1) / seconds if seconds > 0 else None


def ollama_options(options):
    """Suite options as Ollama's ``options`` object: ``max_tokens`` is Ollama's ``num_predict``."""
    mapped = dict(options)
    if "max_tokens" in mapped:
        mapped["num_predict"] = mapped.pop("max_tokens")
    return mapped or None


class ChatTarget:
    """One model on one server, asked streamed chat requests; subclasses speak the engine's API."""

    engine = ""
    chat_path = ""

    def __init__(self, client, model, clock=time.monotonic):
        self.client = client
        self.model = model
        self.clock = clock

    @property
    def url(self):
        return self.client.http.base_url

    def measure(self, messages, options, timeout):
        """A ``Sample`` of one request; a failed request is a failed sample, never an exception."""
        meter = AnswerMeter(self.clock, timeout)
        try:
            with contextlib.closing(meter.watch(self.open_stream(messages, options))) as events:
                for event in events:
                    self.read_event(event, meter)
            return meter.sample(*self.token_figures(meter))
        except ApiError as exc:
            return meter.failed(exc)

    def where(self):
        return "POST %s" % self.client.http.url_for(self.chat_path)

    def missing_model_message(self):
        raise NotImplementedError

    def open_stream(self, messages, options):
        raise NotImplementedError

    def read_event(self, event, meter):
        raise NotImplementedError

    def token_figures(self, meter):
        raise NotImplementedError


class OllamaTarget(ChatTarget):
    """A model on an Ollama server, asked through ``/api/chat``."""

    engine = "ollama"
    chat_path = "/api/chat"

    def __init__(self, client, model, clock=time.monotonic):
        super().__init__(client, canonical_model_name(model), clock)

    def missing_model_message(self):
        """None when the server has the model, else what to do about it."""
        names = sorted(self.client.digests())
        if self.model in names:
            return None
        return ("model %s is not on the Ollama server at %s (it has: %s). Pull it first, for example with "
                "namtech.internal_ai.ollama_model" % (self.model, self.url, ", ".join(names) or "no models"))

    def open_stream(self, messages, options):
        return self.client.chat(self.model, messages, options=ollama_options(options), stream=True)

    def read_event(self, event, meter):
        message = event.get("message")
        meter.content(message.get("content") if isinstance(message, dict) else None)
        if event.get("done") is True:
            meter.final = event

    def token_figures(self, meter):
        """Ollama's own count and timing of the generated tokens, from the stream's final object."""
        if meter.final is None:
            raise MalformedResponse("%s: the stream ended without its final object ('done': true)" % self.where())
        count, duration = meter.final.get("eval_count"), meter.final.get("eval_duration")
        if not is_number(count):
            return len(meter.parts), meter.decode_rate(len(meter.parts))
        if is_number(duration) and duration > 0:
            return int(count), count / (duration / 1e9)
        return int(count), meter.decode_rate(count)


class OpenAITarget(ChatTarget):
    """A model on an OpenAI-compatible server (vLLM, Ollama's /v1), asked through ``/v1/chat/completions``."""

    engine = "openai"
    chat_path = "/v1/chat/completions"

    def missing_model_message(self):
        names = sorted(model["id"] for model in self.client.models())
        if self.model in names:
            return None
        return ("model %s is not served by %s (it serves: %s). Check the name the server serves it under "
                "(vLLM's --served-model-name)" % (self.model, self.url, ", ".join(names) or "no models"))

    def open_stream(self, messages, options):
        body = dict(options)
        max_tokens = body.pop("max_tokens", None)
        return self.client.chat(self.model, messages, max_tokens=max_tokens, stream=True,
                                stream_options={"include_usage": True}, **body)

    def read_event(self, event, meter):
        if not isinstance(event, dict):
            raise MalformedResponse("%s sent an event that is not a JSON object: %s"
                                    % (self.where(), excerpt(str(event))))
        choices = event.get("choices")
        for choice in choices[:1] if isinstance(choices, list) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            meter.content(delta.get("content") if isinstance(delta, dict) else None)
        if isinstance(event.get("usage"), dict):
            meter.usage = event["usage"]

    def token_figures(self, meter):
        """The server's usage when it sent one, else one token per content chunk."""
        tokens = (meter.usage or {}).get("completion_tokens")
        if not is_number(tokens):
            tokens = len(meter.parts)
        return int(tokens), meter.decode_rate(tokens)


# -- running a suite ---------------------------------------------------------------------------------------

def plan_jobs(repetitions_per_case, model_keys):
    """The order of the requests: ``[(model_key, case_index, repetition)]``.

    Repetition by repetition over the cases, so each case's requests spread over the whole run; each pair
    of requests (one per model) alternates which model goes first, so neither is always the warmer one.
    """
    jobs = []
    pair = 0
    for repetition in range(max(repetitions_per_case)):
        for case_index, repetitions in enumerate(repetitions_per_case):
            if repetition >= repetitions:
                continue
            order = list(model_keys) if pair % 2 == 0 else list(reversed(model_keys))
            jobs.extend((key, case_index, repetition) for key in order)
            pair += 1
    return jobs


def run_jobs(jobs, measure_job, concurrency):
    """``{job: Sample}`` with up to ``concurrency`` requests in flight, started in the order of ``jobs``."""
    if concurrency <= 1:
        return dict((job, measure_job(job)) for job in jobs)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [(job, pool.submit(measure_job, job)) for job in jobs]
        return dict((job, future.result()) for job, future in futures)


class EvaluationAborted(Exception):
    """The evaluation could not measure anything useful; the text says why and what to check."""


class Settings:
    """The run parameters: the suite's defaults with the module's overrides."""

    def __init__(self, suite, repetitions=None, concurrency=None):
        self.repetitions = [repetitions or case.repetitions for case in suite.cases]
        self.concurrency = concurrency or suite.defaults["concurrency"]
        self.warmup = suite.defaults["warmup"]
        self.timeout = suite.defaults["timeout"]


def warm_up(suite, targets, settings):
    """Unmeasured requests first, so loading a model into memory counts against neither model."""
    first = suite.cases[0]
    for target in list(targets.values()) * settings.warmup:
        target.measure(first.messages, first.options, settings.timeout)


def evaluate(suite, targets, settings):
    """Run ``suite`` against every target of ``{key: target}``; return ``{key: model summary}``."""
    warm_up(suite, targets, settings)
    keys = list(targets)

    def measure_job(job):
        key, case_index, _repetition = job
        case = suite.cases[case_index]
        return targets[key].measure(case.messages, case.options, settings.timeout)

    samples = run_jobs(plan_jobs(settings.repetitions, keys), measure_job, settings.concurrency)
    summaries = {}
    for key in keys:
        per_case = [[samples[(key, case.index, repetition)] for repetition in range(settings.repetitions[case.index])]
                    for case in suite.cases]
        ensure_reachable(targets[key], per_case)
        summaries[key] = summarize_model(targets[key].model, suite.cases, per_case)
    return summaries


def ensure_reachable(target, per_case):
    samples = [sample for samples in per_case for sample in samples]
    if samples and all(sample.unreachable for sample in samples):
        raise EvaluationAborted("every one of the %d requests to %s at %s failed to connect; the first error: %s"
                                % (len(samples), target.model, target.url, samples[0].error))


# -- scoring -----------------------------------------------------------------------------------------------

def repetition_failures(case, sample):
    """``[(check, message)]`` of one repetition; a failed request fails it as the check ``request``."""
    if not sample.ok:
        return [("request", sample.error)]
    failures = []
    for check in case.checks:
        message = check.failure(sample)
        if message is not None:
            failures.append((check.name, message))
    return failures


def score_case(case, samples):
    passed = 0
    shown = []
    for repetition, sample in enumerate(samples, start=1):
        failures = repetition_failures(case, sample)
        if not failures:
            passed += 1
            continue
        for check, message in failures:
            if len(shown) < MAX_FAILURES_SHOWN:
                shown.append({"repetition": repetition, "check": check, "message": message,
                              "answer": excerpt(sample.answer, ANSWER_EXCERPT_CHARS)})
    return {
        "id": case.id,
        "weight": case.weight,
        "repetitions": len(samples),
        "passed_repetitions": passed,
        "score": rounded(float(passed) / len(samples)),
        "failures": shown,
    }


def weighted_score(case_results):
    total = sum(result["weight"] for result in case_results)
    return rounded(sum(result["weight"] * result["score"] for result in case_results) / total)


def summarize_model(model, cases, per_case):
    """Score, per-case results, latency and throughput of one model; latency counts successful requests only."""
    case_results = [score_case(case, samples) for case, samples in zip(cases, per_case)]
    samples = [sample for group in per_case for sample in group]
    answered = [sample for sample in samples if sample.ok]
    speeds = [sample.tokens_per_second for sample in answered if sample.tokens_per_second is not None]
    return {
        "model": model,
        "score": weighted_score(case_results),
        "cases": case_results,
        "latency": {
            "ttft_seconds": distribution(sample.ttft_seconds for sample in answered),
            "total_seconds": distribution(sample.seconds for sample in answered),
        },
        "tokens_per_second": {
            "p50": rounded(percentile(speeds, 0.5), 2),
            "mean": rounded(sum(speeds) / len(speeds), 2) if speeds else None,
        },
        "requests": len(samples),
        "errors": len(samples) - len(answered),
    }


# -- judging -----------------------------------------------------------------------------------------------

def effective_thresholds(suite_thresholds, overrides):
    """Module options over the suite's thresholds over the built-in defaults (a suite's null disables one)."""
    thresholds = dict(THRESHOLD_DEFAULTS, **suite_thresholds)
    thresholds.update((key, value) for key, value in overrides.items() if value is not None)
    return thresholds


def compare(candidate, baseline):
    def p95(summary, statistic):
        return summary["latency"][statistic]["p95"]

    return {
        "score_drop": rounded(baseline["score"] - candidate["score"]),
        "latency_ratio": ratio(p95(candidate, "total_seconds"), p95(baseline, "total_seconds")),
        "ttft_ratio": ratio(p95(candidate, "ttft_seconds"), p95(baseline, "ttft_seconds")),
        "tokens_per_second_ratio": ratio(candidate["tokens_per_second"]["mean"], baseline["tokens_per_second"]["mean"]),
    }


def errors_note(summary):
    if not summary["errors"]:
        return ""
    return " (%d of %d requests failed)" % (summary["errors"], summary["requests"])


def judge(candidate, baseline, thresholds):
    """``(reasons, comparison)``: every reason is a sentence; no reasons means the candidate passes.

    Missing data fails closed: a latency threshold that cannot be computed is a reason, not a pass.
    """
    reasons = []
    min_score = thresholds["min_score"]
    if min_score is not None and candidate["score"] < min_score:
        reasons.append("score %s is below min_score %s%s"
                       % (format_number(candidate["score"]), format_number(min_score), errors_note(candidate)))
    if candidate["errors"] == candidate["requests"]:
        reasons.append("none of the %d requests to %s succeeded; see the failures of each case"
                       % (candidate["requests"], candidate["model"]))
    if baseline is None:
        return reasons, None
    comparison = compare(candidate, baseline)
    label = "the baseline %s" % baseline["model"]
    max_drop = thresholds["max_score_drop"]
    if max_drop is not None and comparison["score_drop"] > max_drop + 1e-9:
        reasons.append("score %s is %s below the score %s of %s, more than max_score_drop %s"
                       % (format_number(candidate["score"]), format_number(comparison["score_drop"]),
                          format_number(baseline["score"]), label, format_number(max_drop)))
    latency_checks = (("max_latency_ratio", "latency_ratio", "total_seconds", "p95 total latency"),
                      ("max_ttft_ratio", "ttft_ratio", "ttft_seconds", "p95 time to first token"))
    for threshold, key, statistic, words in latency_checks:
        limit = thresholds[threshold]
        if limit is None:
            continue
        value = comparison[key]
        if candidate["errors"] == candidate["requests"]:
            continue
        if value is None:
            why = missing_latency(candidate, baseline, statistic)
            reasons.append("%s cannot be compared with %s: %s" % (words, label, why))
        elif value > limit:
            reasons.append("%s %s s is %s times that of %s (%s s), more than %s %s"
                           % (words, format_number(candidate["latency"][statistic]["p95"]), format_number(value, 2),
                              label, format_number(baseline["latency"][statistic]["p95"]), threshold,
                              format_number(limit)))
    return reasons, comparison


def missing_latency(candidate, baseline, statistic):
    for role, summary in (("the candidate %s" % candidate["model"], candidate),
                          ("the baseline %s" % baseline["model"], baseline)):
        if summary["latency"][statistic]["p95"] is None:
            if summary["requests"] and summary["errors"] == summary["requests"]:
                return "no request to %s succeeded" % role
            return "no figure for %s" % role
    return "a p95 of zero"


# -- baselines from earlier reports ---------------------------------------------------------------------

class BaselineError(Exception):
    """An earlier result file that cannot serve as a baseline."""


def baseline_from_report(data, path, suite_name):
    """The baseline summary from the JSON report (or registered result) of an earlier run of the same suite."""
    if not isinstance(data, dict) or "score" not in data or "latency" not in data:
        raise BaselineError("baseline %s is not a result of llm_eval (it has no 'score' and 'latency' fields); give "
                            "the JSON report an earlier run wrote to report_dir" % path)
    if data.get("suite") != suite_name:
        raise BaselineError("baseline %s was made with suite %r, this run uses suite %r; give a baseline from the "
                            "same suite" % (path, data.get("suite"), suite_name))
    try:
        summary = {
            "model": str(data["model"]),
            "score": float(data["score"]),
            "cases": list(data.get("cases") or []),
            "latency": dict((statistic, dict((key, figure(data["latency"][statistic][key]))
                                             for key in ("p50", "p95", "max")))
                            for statistic in ("ttft_seconds", "total_seconds")),
            "tokens_per_second": dict((key, figure((data.get("tokens_per_second") or {}).get(key)))
                                      for key in ("p50", "mean")),
            "requests": int(data.get("requests") or 0),
            "errors": int(data.get("errors") or 0),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaselineError("baseline %s is not a complete llm_eval result (%s: %s); give the JSON report an "
                            "earlier run wrote to report_dir" % (path, type(exc).__name__, exc)) from None
    summary.update(source="file", path=path, started_at=data.get("started_at"))
    return summary


def figure(value):
    if value is None:
        return None
    if not is_number(value):
        raise ValueError("%r is not a number" % (value,))
    return value


def load_baseline(path, suite_name):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError("cannot read baseline %s: %s" % (path, exc)) from None
    except ValueError as exc:
        raise BaselineError("baseline %s is not JSON (%s); give the JSON report an earlier run wrote to report_dir"
                            % (path, exc)) from None
    return baseline_from_report(data, path, suite_name)


# -- reports -----------------------------------------------------------------------------------------------

def report_basename(suite_name, model, when):
    """``<suite>-<model>-<UTC timestamp>``, with the model's ``:`` and ``/`` made safe for a file name."""
    safe_model = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_") or "model"
    return "%s-%s-%s" % (suite_name, safe_model, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)))


def cell(value):
    text = "-" if value is None else (format_number(value) if is_number(value) else str(value))
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result):
    """A human-readable report of a result (the same dict the module returns)."""
    baseline = result.get("baseline")
    lines = [
        "# Evaluation of %s with suite %s" % (result["model"], result["suite"]),
        "",
        "**%s**" % ("Passed" if result["passed"] else "Rejected"),
        "",
        "- Engine: %s at %s" % (result["engine"], result["url"]),
        "- Started: %s, took %s s" % (result["started_at"], format_number(result["duration_seconds"], 1)),
        "- Thresholds: %s" % ", ".join("%s %s" % (key, cell(value))
                                       for key, value in sorted(result["thresholds"].items())),
    ]
    if baseline:
        source = "run alongside" if baseline.get("source") == "model" else "from %s" % baseline.get("path")
        lines.append("- Baseline: %s (%s)" % (baseline["model"], source))
    if result["reasons"]:
        lines += ["", "## Reasons", "", *("- %s" % reason for reason in result["reasons"])]
    lines += ["", "## Summary", "", *summary_table(result, baseline)]
    if result.get("comparison"):
        comparison = result["comparison"]
        lines += ["", "Score drop %s, p95 total latency ratio %s, p95 TTFT ratio %s, mean tokens/s ratio %s."
                  % tuple(cell(comparison[key]) for key in ("score_drop", "latency_ratio", "ttft_ratio",
                                                            "tokens_per_second_ratio"))]
    lines += ["", "## Cases", "", *cases_table(result, baseline)]
    failures = [(case["id"], failure) for case in result["cases"] for failure in case["failures"]]
    if failures:
        lines += ["", "## Failures (first %d per case)" % MAX_FAILURES_SHOWN, ""]
        for case_id, failure in failures:
            lines.append("- `%s` repetition %d, %s: %s. Answer: `%s`"
                         % (case_id, failure["repetition"], failure["check"], failure["message"],
                            failure["answer"].replace("`", "'")))
    return "\n".join(lines) + "\n"


def summary_table(result, baseline):
    columns = [result] + ([baseline] if baseline else [])
    header = "| | candidate %s |" % cell(result["model"])
    if baseline:
        header += " baseline %s |" % cell(baseline["model"])
    rows = [header, "|---|---|" + ("---|" if baseline else "")]

    def row(label, value_of):
        rows.append("| %s | %s |" % (label, " | ".join(value_of(summary) for summary in columns)))

    def triple(statistic):
        return lambda summary: " / ".join(cell(summary["latency"][statistic][key]) for key in ("p50", "p95", "max"))

    row("Score", lambda summary: cell(summary["score"]))
    row("Requests (errors)", lambda summary: "%s (%s)" % (summary["requests"], summary["errors"]))
    row("TTFT p50 / p95 / max (s)", triple("ttft_seconds"))
    row("Total p50 / p95 / max (s)", triple("total_seconds"))
    row("Tokens/s p50 / mean", lambda summary: " / ".join(cell(summary["tokens_per_second"][key])
                                                          for key in ("p50", "mean")))
    return rows


def cases_table(result, baseline):
    baseline_scores = dict((case.get("id"), case.get("score")) for case in (baseline or {}).get("cases", [])
                           if isinstance(case, dict))
    rows = ["| Case | Weight | Passed | Score |" + (" Baseline score |" if baseline else ""),
            "|---|---|---|---|" + ("---|" if baseline else "")]
    for case in result["cases"]:
        line = "| %s | %s | %d/%d | %s |" % (cell(case["id"]), cell(case["weight"]), case["passed_repetitions"],
                                             case["repetitions"], cell(case["score"]))
        if baseline:
            line += " %s |" % cell(baseline_scores.get(case["id"]))
        rows.append(line)
    return rows
