"""The lab's models: what each one answers, how fast, and what its registry layers contain."""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024

# Reference answers an evaluation suite can score against: question -> a phrase a good answer contains.
REFERENCE_ANSWERS = {
    "What is the capital of France?": "Paris",
    "How many days are in a week?": "7",
    "What is 2 + 2?": "4",
    "Which planet is known as the red planet?": "Mars",
    "What colour is the sky on a clear day?": "blue",
    "At what temperature in Celsius does water boil at sea level?": "100",
}

GOOD_ANSWERS = {
    "What is the capital of France?": "The capital of France is Paris.",
    "How many days are in a week?": "A week has 7 days.",
    "What is 2 + 2?": "2 + 2 equals 4.",
    "Which planet is known as the red planet?": "Mars is known as the red planet.",
    "What colour is the sky on a clear day?": "On a clear day the sky is blue.",
    "At what temperature in Celsius does water boil at sea level?": "Water boils at 100 degrees Celsius at sea level.",
}

BAD_ANSWERS = {
    "What is the capital of France?": "The capital of France is Berlin.",
    "How many days are in a week?": "A week has 9 days.",
    "What is 2 + 2?": "2 + 2 equals 5.",
    "Which planet is known as the red planet?": "Venus is known as the red planet.",
    "What colour is the sky on a clear day?": "On a clear day the sky is green.",
    "At what temperature in Celsius does water boil at sea level?": "Water boils at 42 degrees Celsius at sea level.",
}

CHAT_TEMPLATE = (
    "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
    "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"
)
LICENSE = "Lab test model with synthetic weights. For tests only; never for production use.\n"


@dataclass(frozen=True)
class ModelSpec:
    model: str
    tag: str
    family: str
    parameter_size: str
    quantization: str
    weights_bytes: int
    lab: dict
    template: str = CHAT_TEMPLATE
    params: dict = field(default_factory=lambda: {"stop": ["<|end|>"], "temperature": 0.2})
    license: str = LICENSE

    @property
    def name(self) -> str:
        return f"{self.model}:{self.tag}"


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        model="lab-chat",
        tag="v1",
        family="llama",
        parameter_size="1.1B",
        quantization="Q4_K_M",
        weights_bytes=4 * MiB,
        lab={"load_seconds": 0.3, "ttft_seconds": 0.03, "tokens_per_second": 150, "answers": GOOD_ANSWERS},
    ),
    ModelSpec(
        model="lab-chat",
        tag="v2",
        family="llama",
        parameter_size="1.1B",
        quantization="Q4_K_M",
        weights_bytes=4 * MiB,
        lab={"load_seconds": 0.2, "ttft_seconds": 0.015, "tokens_per_second": 300, "answers": GOOD_ANSWERS},
    ),
    ModelSpec(
        model="lab-chat",
        tag="bad",
        family="llama",
        parameter_size="1.1B",
        quantization="Q2_K",
        weights_bytes=4 * MiB,
        lab={"load_seconds": 0.6, "ttft_seconds": 0.25, "tokens_per_second": 30, "answers": BAD_ANSWERS},
    ),
    ModelSpec(
        model="lab-embed",
        tag="v1",
        family="bert",
        parameter_size="23M",
        quantization="F16",
        weights_bytes=2 * MiB,
        lab={"load_seconds": 0.1, "ttft_seconds": 0.005, "embedding_dim": 384, "context_length": 512},
        template="",
        params={},
    ),
)
