"""Issue 10 point 7: a GGUF without a chat template gets the named one its header calls for.

The choice is read from real headers (the GGUF writer, the node's header parser), recorded in
the Process record, and shown on `run`; a model that fits none gets a warning and raw prompts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gguf import GGUFWriter

from inference.chat import NAMED_TEMPLATES, resolve_template
from inference.models import read_gguf_metadata
from inference.records import ProcessRecord, canonical_json, parse_record, record_json
from inference.template_choice import CHOSEN_BY, choose_template
from permastore.store import Store

from .conftest import make_gguf

GEMMA_TOKENS = ("<start_of_turn>", "<end_of_turn>")


def header(tmp_path, architecture: str, tokens: list[str], name: str = "m") -> dict:
    """Write a tensor-less GGUF header with this architecture, name and vocabulary; return its parsed fields."""
    path = tmp_path / f"{architecture}-{len(tokens)}.gguf"
    writer = GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    metadata = read_gguf_metadata(path)
    assert metadata.chat_template is None
    return metadata


BASE = ["<unk>", "<s>", "</s>", "a", "b"]


@pytest.mark.parametrize("architecture, extra, name, expected", [
    ("gemma3", ["<start_of_turn>", "<end_of_turn>", "<start_of_image>"], "Gemma 3 270m", "gemma"),
    ("gemma2", ["<start_of_turn>", "<end_of_turn>"], "gemma-2-2b", "gemma"),
    ("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "Qwen2.5 0.5B", "chatml"),
    ("llama", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "Llama 3.2 1B",
     "llama-3"),
    ("phi3", ["<|user|>", "<|assistant|>", "<|end|>", "<|system|>"], "Phi 3 Mini", "phi-3"),
    ("llama", ["[INST]", "[/INST]"], "Mistral 7B Instruct v0.3", "mistral"),
    ("llama", [], "Mistral 7B Instruct v0.1", "mistral"),  # markers are plain text: by name
    ("llama", [], "Llama 2 7B Chat", "llama-2"),
    ("llama", [], "Llama-2-13b-chat", "llama-2"),
])
def test_the_template_a_header_calls_for(tmp_path, architecture, extra, name, expected):
    metadata = header(tmp_path, architecture, BASE + extra, name)
    choice = metadata.template_choice
    assert choice.name == expected
    assert architecture in choice.reason
    assert expected in NAMED_TEMPLATES  # only templates the node knows are ever chosen


def test_no_fit_says_why(tmp_path):
    choice = header(tmp_path, "mamba", BASE, "Some Model").template_choice
    assert choice.name is None
    assert "no turn tokens or name of a known chat format" in choice.reason and "mamba" in choice.reason
    # A name alone does not pick a template for another architecture.
    assert header(tmp_path, "rwkv6", BASE, "not llama 2").template_choice.name is None


def test_architecture_breaks_a_tie_between_marker_sets():
    both = set(BASE) | set(GEMMA_TOKENS) | {"<|im_start|>", "<|im_end|>"}
    assert choose_template({"general.architecture": "gemma3"}, both).name == "gemma"
    assert choose_template({"general.architecture": "qwen2"}, both).name == "chatml"


def test_a_model_with_its_own_template_is_not_guessed_for(tiny_gguf):
    assert read_gguf_metadata(tiny_gguf).template_choice is None


def test_named_templates_render_with_the_markers_chosen(tmp_path):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    from inference.template_sandbox import TemplateSandbox

    sandbox = TemplateSandbox()
    try:
        def rendered(name, bos="<s>", eos="</s>"):
            return sandbox.render(name, NAMED_TEMPLATES[name], bos, eos, messages)

        assert rendered("llama-3", "<|begin_of_text|>") == (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")
        assert rendered("mistral") == "<s>[INST] S\n\nhi [/INST]"
        assert rendered("gemma", "<bos>") == "<bos><start_of_turn>user\nS\n\nhi<end_of_turn>\n<start_of_turn>model\n"
    finally:
        sandbox.close()
    assert resolve_template(None, None, "<s>", "</s>", "llama-3").stop == ["<|eot_id|>", "<|start_header_id|>", "</s>"]
    assert resolve_template(None, None, "<bos>", "<eos>", "gemma").stop == ["<end_of_turn>", "<start_of_turn>", "<eos>"]


def test_process_records_stay_compatible():
    """Records without a guessed template serialise exactly as before; old records still parse."""
    old = ProcessRecord(model="m" * 43, engine={}, settings={}, chat_template="model",
                        chat_template_sha256="0" * 64, system_prompt=None)
    body = record_json(old)
    assert "chat_template_chosen" not in body
    assert parse_record(canonical_json(body)) == old
    guessed = ProcessRecord(model="m" * 43, engine={}, settings={}, chat_template="gemma",
                            chat_template_sha256="0" * 64, system_prompt=None,
                            chat_template_chosen={"by": CHOSEN_BY, "template": "gemma", "reason": "r"})
    assert parse_record(canonical_json(record_json(guessed))) == guessed
    forged = dict(record_json(guessed), chat_template_chosen={"by": CHOSEN_BY, "template": "chatml", "reason": "r"})
    with pytest.raises(Exception, match="names another template"):
        parse_record(canonical_json(forged))


# ---------------------------------------------------------------------------- through the real CLI


def permastore(data, *args):
    done = subprocess.run([sys.executable, "-m", "permastore.cli.main", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def records_of(data, stdout):
    ids = dict(line.split(": ", 1) for line in stdout.splitlines() if line.split(":")[0] in ("process", "message"))
    store = Store.open(data)
    try:
        return {kind: json.loads(b"".join(store.read(value.strip()))) for kind, value in ids.items()}
    finally:
        store.close()


def test_run_without_a_template_uses_the_one_the_vocabulary_calls_for(tmp_path):
    model = make_gguf(tmp_path / "gemma-like.gguf", chat_template=None, name="gemma-like", chat_tokens=GEMMA_TOKENS)
    data = tmp_path / "data"
    rc, model_id, err = permastore(data, "model", "add", str(model))
    assert rc == 0, err
    rc, out, err = permastore(data, "run", model_id.strip(), "cats", "--system", "Be brief", "--max-tokens", "4",
                              "--seed", "7")
    assert rc == 0, err
    assert "chat template: gemma (the model has none of its own; architecture llama; its vocabulary has the " \
           "gemma turn tokens <start_of_turn>, <end_of_turn>)" in err
    found = records_of(data, out)
    process = found["process"]
    assert process["chat_template"] == "gemma"
    assert process["chat_template_chosen"]["by"] == CHOSEN_BY and process["chat_template_chosen"]["template"] == "gemma"
    assert found["message"]["rendered_prompt"] == "<s><start_of_turn>user\nBe brief\n\ncats<end_of_turn>\n" \
                                                  "<start_of_turn>model\n"
    assert "<end_of_turn>" in found["message"]["sampling"]["stop"]
    # The process's template is the recorded one: replay renders and checks it again.
    rc, replayed, err = permastore(data, "replay", out.split("result:")[1].split()[0])
    assert rc == 0 and replayed.startswith("identical"), err


def test_a_model_that_opens_the_next_turn_has_ended_its_own(tmp_path):
    """A pretrained model goes on to write the next turn: its opening control token stops the call.

    Control tokens detokenize to nothing, so the stop string `<start_of_turn>` is seen only as
    its token; the model here writes that token at every step.
    """
    model = make_gguf(tmp_path / "turn-taker.gguf", chat_template=None, name="turn-taker", chat_tokens=GEMMA_TOKENS,
                      favour="<start_of_turn>")
    data = tmp_path / "data"
    _, model_id, _ = permastore(data, "model", "add", str(model))
    rc, out, err = permastore(data, "run", model_id.strip(), "cats", "--max-tokens", "8", "--seed", "7")
    assert rc == 0, err
    assert "tokens: 22 prompt + 1 output  finish: stop" in err
    assert out.startswith("\nprocess: ")  # no text: the turn ended at once
    rc, replayed, err = permastore(data, "replay", out.split("result:")[1].split()[0])
    assert rc == 0 and replayed.startswith("identical"), err
    # The same model asked for raw text (no template, no stops) writes the token to the limit.
    rc, out, err = permastore(data, "run", model_id.strip(), "cats", "--raw", "--max-tokens", "8", "--seed", "7")
    assert rc == 0 and "+ 8 output  finish: length" in err, err


def test_run_warns_when_no_template_fits(tmp_path):
    model = make_gguf(tmp_path / "plain.gguf", chat_template=None, name="plain", chat_tokens=())
    data = tmp_path / "data"
    _, model_id, _ = permastore(data, "model", "add", str(model))
    rc, out, err = permastore(data, "run", model_id.strip(), "cats", "--max-tokens", "3", "--seed", "1")
    assert rc == 0, err
    assert "permastore: warning: the model has no chat template and none of this node's fits" in err
    assert "Name one with --chat-template" in err
    found = records_of(data, out)
    assert found["process"]["chat_template"] is None
    assert found["process"]["chat_template_chosen"]["template"] is None
    assert found["message"]["rendered_prompt"] == "cats"  # raw text
    # Naming one still works, and nothing is guessed then.
    rc, out, err = permastore(data, "run", model_id.strip(), "cats", "--chat-template", "gemma", "--max-tokens", "2")
    assert rc == 0 and "warning" not in err and "chat template:" not in err
    assert "chat_template_chosen" not in records_of(data, out)["process"]


def test_run_help_lists_every_template():
    done = subprocess.run([sys.executable, "-m", "permastore.cli.main", "run", "--help"], capture_output=True,
                          text=True, timeout=60)
    text = " ".join(done.stdout.split())
    for name in ["model", *NAMED_TEMPLATES]:
        assert f" {name}," in text or f" {name} " in text or f" {name}(" in text, name
    assert "gemma" in text and "llama-3" in text and "mistral" in text
