"""Model names as Ollama understands them: ``[scheme://][host/][namespace/]model[:tag]``."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?$")


class InvalidName(ValueError):
    """The text is not a valid model name."""


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = ""

    @classmethod
    def parse(cls, text: str) -> ModelName:
        if not isinstance(text, str) or not text.strip():
            raise InvalidName("invalid model name")
        scheme, rest = _split_scheme(text.strip())
        rest, tag = _split_tag(rest)
        host, namespace, model = _split_path(rest)
        name = cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme)
        name.validate()
        return name

    def validate(self) -> None:
        if "@" in self.model or "@" in self.tag:
            raise InvalidName("pulling or addressing by digest is not supported")
        valid = (
            _HOST.match(self.host) and _PART.match(self.namespace) and _PART.match(self.model) and _TAG.match(self.tag)
        )
        if not valid:
            raise InvalidName("invalid model name")

    @property
    def canonical(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.model}"

    @property
    def display(self) -> str:
        """The shortest form that still names this model, as ``ollama list`` shows it."""
        if self.host != DEFAULT_HOST:
            return self.canonical
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest_parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)


def _split_scheme(text: str) -> tuple[str, str]:
    for scheme in ("http", "https"):
        prefix = f"{scheme}://"
        if text.lower().startswith(prefix):
            return scheme, text[len(prefix) :]
    return "", text


def _split_tag(text: str) -> tuple[str, str]:
    last_slash = text.rfind("/")
    last_colon = text.rfind(":")
    if last_colon > last_slash:
        return text[:last_colon], text[last_colon + 1 :]
    return text, DEFAULT_TAG


def _split_path(text: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) == 1:
        return DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
    if len(parts) == 2:
        return DEFAULT_HOST, parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise InvalidName("invalid model name")
