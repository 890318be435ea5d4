"""Render a chat template with Jinja, as Hugging Face's chat templates expect, within a size budget.

Runs inside the template sandbox's process (`inference.template_sandbox`), never on the
server's threads: a model's template is code. The environment matches what chat
templates are written for (and what llama-cpp-python's Jinja2ChatFormatter builds):
a sandboxed immutable environment, trim_blocks and lstrip_blocks, loop controls, the
`{% generation %}` tag passed through, `tojson` as json.dumps, `raise_exception` and
`strftime_now`. Only jinja2 is imported here, so the sandbox starts quickly.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class OutputTooLarge(ValueError):
    """The template wrote more than the size budget."""


class _GenerationTag(jinja2.ext.Extension):
    """Pass-through for Hugging Face's `{% generation %}` chat-template tag."""

    tags = {"generation"}  # jinja2 reads the class attribute

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ValueError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def compile_template(source: str) -> jinja2.Template:
    """Given a template's Jinja source, return it compiled in the chat-template environment."""
    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    return environment.from_string(source)


def render_compiled(template: jinja2.Template, bos_token: str, eos_token: str,
                    messages: list[dict[str, str]], max_chars: int) -> str:
    """Given a compiled template and chat messages, return the prompt ending with the assistant's turn.

    Rendering stops with OutputTooLarge once the text passes max_chars, so a template
    cannot fill the sandbox's memory with output.
    """
    context = {
        "messages": messages,
        "eos_token": eos_token,
        "bos_token": bos_token,
        "raise_exception": _raise_exception,
        "add_generation_prompt": True,
        "functions": None,
        "function_call": None,
        "tools": None,
        "tool_choice": None,
        "strftime_now": _strftime_now,
    }
    pieces: list[str] = []
    size = 0
    for piece in template.generate(**context):
        size += len(piece)
        if size > max_chars:
            raise OutputTooLarge(f"the rendered prompt passed {max_chars} characters")
        pieces.append(piece)
    return "".join(pieces)
