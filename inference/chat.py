"""Chat templates: turn a list of chat messages into the one prompt string the model reads.

A process uses the model's own template (GGUF `tokenizer.chat_template`, a Jinja
template) or one of the named templates below. Templates are code: they render in the
template sandbox (`inference.template_sandbox`), never on the server's threads. The
rendered prompt is recorded in the Message, so replay can check that rendering it again
gives the same text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, overload

from inference.errors import InvalidRequest

MODEL_TEMPLATE = "model"  # the name recorded when the GGUF's own template is used
ROLES = ("system", "user", "assistant")

# Named templates, written as Jinja so every template goes through one renderer.
# Whitespace lives inside string literals: the formatter trims block newlines.
NAMED_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama-2": (
        "{% set ns = namespace(system='') %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' }}"
        "{% if ns.system %}{{ '<<SYS>>\n' + ns.system + '\n<</SYS>>\n\n' }}{% set ns.system = '' %}{% endif %}"
        "{{ m['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "phi-3": (
        "{% for m in messages %}"
        "{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    # Gemma has no system role: the system text opens the first user turn.
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(system='') %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
        "{% elif m['role'] == 'user' %}{{ '<start_of_turn>user\n' + ns.system + m['content'] + '<end_of_turn>\n' }}"
        "{% set ns.system = '' %}"
        "{% else %}{{ '<start_of_turn>model\n' + m['content'] + '<end_of_turn>\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    # Meta's Llama 3 format: a header per turn, contents trimmed, each turn ended by <|eot_id|>.
    "llama-3": (
        "{{ bos_token }}"
        "{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # Mistral's [INST] format: no system role, so the system text opens the first user turn.
    "mistral": (
        "{{ bos_token }}{% set ns = namespace(system='') %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
        "{% elif m['role'] == 'user' %}{{ '[INST] ' + ns.system + m['content'] + ' [/INST]' }}"
        "{% set ns.system = '' %}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
}
# What ends an assistant turn in each named template, besides the model's EOS: its end
# marker, and the marker that opens the next turn (a pretrained model that goes on to write
# the user's next turn has finished its own). A marker that is one control token of the
# vocabulary stops as that token (inference.engine); spelt in pieces, as text.
NAMED_STOPS = {
    "chatml": ["<|im_end|>", "<|im_start|>"], "llama-2": [], "phi-3": ["<|end|>", "<|user|>"],
    "gemma": ["<end_of_turn>", "<start_of_turn>"], "llama-3": ["<|eot_id|>", "<|start_header_id|>"],
    "mistral": ["[INST]"],
}


@dataclass(frozen=True)
class ChatTemplate:
    """A resolved template: its name, Jinja source and the special token texts it uses."""

    name: str
    source: str
    bos_token: str
    eos_token: str

    @property
    def source_sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @property
    def stop(self) -> list[str]:
        """Return the strings that end an assistant turn under this template."""
        extra = NAMED_STOPS.get(self.name, [])
        return [s for s in [*extra, self.eos_token] if s]


def template_names() -> list[str]:
    """Return every name a process may ask for."""
    return [MODEL_TEMPLATE, *NAMED_TEMPLATES]


@overload
def resolve_template(name: str, model_template: str | None, bos_token: str, eos_token: str,
                     fallback: str | None = None) -> ChatTemplate: ...
@overload
def resolve_template(name: str | None, model_template: str | None, bos_token: str, eos_token: str,
                     fallback: str | None = None) -> ChatTemplate | None: ...


def resolve_template(name: str | None, model_template: str | None, bos_token: str, eos_token: str,
                     fallback: str | None = None) -> ChatTemplate | None:
    """Given a requested name (None: the model's own if any) and the model's template, return the template.

    Without a name, a model with no template of its own gets the `fallback` (the named
    template its header calls for, inference.template_choice); None when there is none
    either (raw prompts only).
    """
    if name is not None and not isinstance(name, str):
        raise InvalidRequest(f"chat template must be a name, one of {', '.join(template_names())}")
    if name is None:
        name = MODEL_TEMPLATE if model_template else fallback
        if name is None:
            return None
    if name == MODEL_TEMPLATE:
        if not model_template:
            raise InvalidRequest("the model has no chat template of its own; name one of "
                                 + ", ".join(NAMED_TEMPLATES))
        return ChatTemplate(MODEL_TEMPLATE, model_template, bos_token, eos_token)
    if name not in NAMED_TEMPLATES:
        raise InvalidRequest(f"unknown chat template {name!r}; known: {', '.join(template_names())}")
    return ChatTemplate(name, NAMED_TEMPLATES[name], bos_token, eos_token)


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """Given chat messages from a caller, return them as plain {role, content} dicts or raise InvalidRequest."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list")
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{index}] must be an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{index}].role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{index}].content must be a string")
        clean.append({"role": role, "content": content})
    return clean


class TemplateRenderer(Protocol):
    """Renders Jinja chat templates somewhere safe (TemplateSandbox)."""

    def render(self, name: str, source: str, bos_token: str, eos_token: str,
               messages: list[dict[str, str]]) -> str: ...


def render(renderer: TemplateRenderer, template: ChatTemplate, messages: list[dict[str, str]]) -> str:
    """Given a renderer, a template and validated messages, return the prompt ending with the assistant's turn."""
    return renderer.render(template.name, template.source, template.bos_token, template.eos_token, messages)
