"""Chat templates: the model's own (from its GGUF) and the named ones, rendered through Jinja."""

import os
import time

import pytest

from inference.chat import NAMED_TEMPLATES, ChatTemplate, render, resolve_template, validate_messages
from inference.errors import InvalidRequest
from inference.models import read_gguf_metadata
from inference.template_sandbox import TemplateSandbox


@pytest.fixture(scope="module")
def sandbox():
    renderer = TemplateSandbox()
    yield renderer
    renderer.close()


JOKER = [
    {"role": "system", "content": "Tell a joke on the given topic, on one line"},
    {"role": "user", "content": "cats"},
]


def test_models_own_template_is_the_default(sandbox, tiny_gguf):
    metadata = read_gguf_metadata(tiny_gguf)
    template = resolve_template(None, metadata.chat_template, metadata.bos_token, metadata.eos_token)
    assert template.name == "model"
    assert render(sandbox, template, JOKER) == (
        "<|im_start|>system\nTell a joke on the given topic, on one line<|im_end|>\n"
        "<|im_start|>user\ncats<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml(sandbox):
    template = resolve_template("chatml", None, "<s>", "</s>")
    assert render(sandbox, template, JOKER).endswith("<|im_start|>user\ncats<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_end|>" in template.stop


def test_llama_2(sandbox):
    template = resolve_template("llama-2", None, "<s>", "</s>")
    two_turns = JOKER + [{"role": "assistant", "content": "meow"}, {"role": "user", "content": "dogs"}]
    assert render(sandbox, template, two_turns) == (
        "<s>[INST] <<SYS>>\nTell a joke on the given topic, on one line\n<</SYS>>\n\ncats [/INST]"
        " meow </s><s>[INST] dogs [/INST]"
    )


def test_phi_3(sandbox):
    template = resolve_template("phi-3", None, "<s>", "<|endoftext|>")
    assert render(sandbox, template, JOKER) == (
        "<|system|>\nTell a joke on the given topic, on one line<|end|>\n"
        "<|user|>\ncats<|end|>\n<|assistant|>\n"
    )
    assert template.stop == ["<|end|>", "<|user|>", "<|endoftext|>"]  # its end, the next turn, EOS


def test_no_template_means_raw_only():
    assert resolve_template(None, None, "<s>", "</s>") is None
    with pytest.raises(InvalidRequest, match="no chat template of its own"):
        resolve_template("model", None, "<s>", "</s>")


def test_unknown_template_is_refused():
    with pytest.raises(InvalidRequest, match="unknown chat template 'vicuna'"):
        resolve_template("vicuna", None, "<s>", "</s>")
    with pytest.raises(InvalidRequest, match="must be a name"):
        resolve_template(["chatml"], None, "<s>", "</s>")


@pytest.mark.parametrize("bad", [[], "hi", [{"role": "robot", "content": "x"}], [{"role": "user"}], ["x"]])
def test_bad_messages_are_refused(bad):
    with pytest.raises(InvalidRequest):
        validate_messages(bad)


def test_named_templates_differ_in_hash():
    hashes = {resolve_template(name, None, "", "").source_sha256 for name in NAMED_TEMPLATES}
    assert len(hashes) == len(NAMED_TEMPLATES)


def test_gemma_folds_the_system_prompt_into_the_first_user_turn(sandbox):
    template = resolve_template("gemma", None, "<bos>", "<eos>")
    assert render(sandbox, template, JOKER) == (
        "<bos><start_of_turn>user\nTell a joke on the given topic, on one line\n\ncats<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template.stop == ["<end_of_turn>", "<start_of_turn>", "<eos>"]


def test_templates_render_as_llama_cpp_python_renders_them(sandbox, tiny_gguf):
    """The sandbox's Jinja environment gives the prompts recorded before it existed (byte for byte)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    metadata = read_gguf_metadata(tiny_gguf)
    conversation = JOKER + [{"role": "assistant", "content": "meow"}, {"role": "user", "content": "dogs"}]
    for name in [None, *NAMED_TEMPLATES]:
        template = resolve_template(name, metadata.chat_template, "<s>", "</s>")
        formatter = Jinja2ChatFormatter(template.source, eos_token="</s>", bos_token="<s>", add_generation_prompt=True)
        assert render(sandbox, template, conversation) == formatter(messages=conversation).prompt


HOSTILE = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"


def test_a_template_that_never_ends_is_stopped_and_the_sandbox_keeps_serving(sandbox):
    hostile = ChatTemplate("model", HOSTILE, "<s>", "</s>")
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="took longer than"):
        render(sandbox, hostile, JOKER)
    assert time.monotonic() - started < 10
    # The next render is served (the sandbox stopped the loop, or was replaced).
    assert render(sandbox, resolve_template("chatml", None, "<s>", "</s>"), JOKER).endswith("assistant\n")


def test_a_template_that_writes_too_much_is_refused(sandbox):
    flood = ChatTemplate("model", "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "<s>", "</s>")
    with pytest.raises(InvalidRequest, match="passed"):
        render(sandbox, flood, JOKER)


def test_templates_never_render_on_the_calling_thread(sandbox):
    """A render runs in another OS process: the template cannot see or change this one."""
    probe = ChatTemplate("model", "{{ raise_exception('pid ' ~ (messages | length)) }}", "<s>", "</s>")
    with pytest.raises(InvalidRequest, match="pid 2"):
        render(sandbox, probe, JOKER)
    assert sandbox._process.pid != os.getpid()
