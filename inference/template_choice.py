"""Which named chat template a GGUF without its own calls for, read from its header (pure).

A chat template writes turn markers that the model learned as single tokens: Gemma's
`<start_of_turn>`, ChatML's `<|im_start|>`, Llama 3's `<|start_header_id|>`. So the
vocabulary itself says which format a model was trained on; the architecture breaks a tie
(a vocabulary holding two sets of markers) and the model's name is the last resort for the
formats that have no marker tokens of their own (Llama 2 and the first Mistral models write
`[INST]` as plain text).

    choice = choose_template(header_fields, tokens)
    choice.name      # "gemma", ... or None when nothing fits (raw prompts only)
    choice.reason    # in words, recorded in the Process record

Only templates in `inference.chat.NAMED_TEMPLATES` are ever chosen.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

CHOSEN_BY = "gguf-metadata"  # what a Process record says chose its template


@dataclass(frozen=True)
class MarkerRule:
    """A template picked when every one of its turn markers is a whole token of the vocabulary."""

    template: str
    markers: tuple[str, ...]
    architectures: tuple[str, ...]  # GGUF `general.architecture` values of the families that use it


@dataclass(frozen=True)
class NameRule:
    """A template picked by the model's name, for formats whose markers are plain text."""

    template: str
    pattern: re.Pattern[str]
    architectures: tuple[str, ...]


# Order matters only between rules of equal standing: an architecture match wins first.
MARKER_RULES = (
    MarkerRule("llama-3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), ("llama",)),
    MarkerRule("gemma", ("<start_of_turn>", "<end_of_turn>"), ("gemma", "gemma2", "gemma3", "gemma3n")),
    MarkerRule("phi-3", ("<|user|>", "<|assistant|>", "<|end|>"), ("phi3",)),
    MarkerRule("chatml", ("<|im_start|>", "<|im_end|>"),
               ("qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "internlm2", "yi", "olmo2", "smollm3")),
    # Mistral's v3 and Tekken vocabularies make [INST] a control token.
    MarkerRule("mistral", ("[INST]", "[/INST]"), ("llama", "mistral3")),
)
NAME_RULES = (
    NameRule("mistral", re.compile(r"\b(mistral|mixtral)\b", re.IGNORECASE), ("llama",)),
    NameRule("llama-2", re.compile(r"\bllama[- ]?2\b", re.IGNORECASE), ("llama",)),
)
NAME_FIELDS = ("general.name", "general.basename", "general.finetune")


@dataclass(frozen=True)
class TemplateChoice:
    """The template chosen for a model without its own (name None: none fits) and why."""

    name: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Return what the Process record keeps: who chose, which, and why."""
        return {"by": CHOSEN_BY, "template": self.name, "reason": self.reason}


def choose_template(fields: Mapping[str, Any], tokens: Collection[str]) -> TemplateChoice:
    """Given a GGUF header's fields and its token texts, return the named template that fits, if any."""
    architecture = str(fields.get("general.architecture") or "unknown")
    vocabulary = tokens if isinstance(tokens, (set, frozenset)) else set(tokens)
    fitting = [rule for rule in MARKER_RULES if all(marker in vocabulary for marker in rule.markers)]
    fitting.sort(key=lambda rule: architecture not in rule.architectures)  # stable: RULES order otherwise
    if fitting:
        rule = fitting[0]
        markers = ", ".join(rule.markers)
        return TemplateChoice(rule.template, f"architecture {architecture}; its vocabulary has the "
                                             f"{rule.template} turn tokens {markers}")
    names = [str(fields[key]) for key in NAME_FIELDS if isinstance(fields.get(key), str) and fields[key]]
    for name_rule in NAME_RULES:
        if architecture not in name_rule.architectures:
            continue
        for name in names:
            if name_rule.pattern.search(name):
                return TemplateChoice(name_rule.template, f"architecture {architecture}; its name {name!r} "
                                                          f"is of the {name_rule.template} family")
    known = ", ".join(dict.fromkeys([r.template for r in MARKER_RULES] + [r.template for r in NAME_RULES]))
    return TemplateChoice(None, f"architecture {architecture}: no turn tokens or name of a known chat "
                                f"format ({known}) in its header")
