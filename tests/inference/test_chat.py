"""Chat templates: the model's own (from its GGUF) and the named ones, rendered through Jinja."""

import pytest

from inference.chat import NAMED_TEMPLATES, render, resolve_template, validate_messages
from inference.errors import InvalidRequest
from inference.models import read_gguf_metadata

JOKER = [
    {"role": "system", "content": "Tell a joke on the given topic, on one line"},
    {"role": "user", "content": "cats"},
]


def test_models_own_template_is_the_default(tiny_gguf):
    metadata = read_gguf_metadata(tiny_gguf)
    template = resolve_template(None, metadata.chat_template, metadata.bos_token, metadata.eos_token)
    assert template.name == "model"
    assert render(template, JOKER) == (
        "<|im_start|>system\nTell a joke on the given topic, on one line<|im_end|>\n"
        "<|im_start|>user\ncats<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml():
    template = resolve_template("chatml", None, "<s>", "</s>")
    assert render(template, JOKER).endswith("<|im_start|>user\ncats<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_end|>" in template.stop


def test_llama_2():
    template = resolve_template("llama-2", None, "<s>", "</s>")
    two_turns = JOKER + [{"role": "assistant", "content": "meow"}, {"role": "user", "content": "dogs"}]
    assert render(template, two_turns) == (
        "<s>[INST] <<SYS>>\nTell a joke on the given topic, on one line\n<</SYS>>\n\ncats [/INST]"
        " meow </s><s>[INST] dogs [/INST]"
    )


def test_phi_3():
    template = resolve_template("phi-3", None, "<s>", "<|endoftext|>")
    assert render(template, JOKER) == (
        "<|system|>\nTell a joke on the given topic, on one line<|end|>\n"
        "<|user|>\ncats<|end|>\n<|assistant|>\n"
    )
    assert template.stop == ["<|end|>", "<|endoftext|>"]


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


def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    template = resolve_template("gemma", None, "<bos>", "<eos>")
    assert render(template, JOKER) == (
        "<bos><start_of_turn>user\nTell a joke on the given topic, on one line\n\ncats<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template.stop == ["<end_of_turn>", "<eos>"]
