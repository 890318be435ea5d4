"""The tiny GGUF fixture: reproducible, small, and a real model llama.cpp runs."""

import subprocess
import sys

from inference.engine import Engine
from inference.models import read_gguf_metadata
from inference.sampling import EngineSettings, SamplingParams

from .conftest import REPO, TINY_GGUF


def test_regenerated_fixture_is_byte_identical(tmp_path):
    target = tmp_path / "again.gguf"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "make_tiny_gguf.py"), str(target)], check=True,
                   capture_output=True)
    assert target.read_bytes() == TINY_GGUF.read_bytes()


def test_fixture_is_small():
    assert TINY_GGUF.stat().st_size < 1_000_000


def test_header_metadata():
    metadata = read_gguf_metadata(TINY_GGUF)
    assert metadata.architecture == "llama"
    assert metadata.name == "tiny-llama"
    assert metadata.quantization == "F16"
    assert metadata.context_length == 512
    assert metadata.chat_template and "<|im_start|>" in metadata.chat_template
    assert (metadata.bos_token, metadata.eos_token) == ("<s>", "</s>")
    # No general.parameter_count in the header: counted from tensor shapes.
    vocab, embd, ff, layers, kv = 369, 64, 128, 2, 32
    per_layer = 2 * embd + 2 * embd * embd + 2 * kv * embd + 3 * embd * ff
    assert metadata.parameter_count == 2 * vocab * embd + embd + layers * per_layer


def test_llama_cpp_runs_it():
    engine = Engine.from_path(TINY_GGUF, EngineSettings(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1))
    generation = engine.generate("the joke", SamplingParams(seed=1, max_tokens=8))
    assert generation.prompt_tokens > 1
    assert 1 <= len(generation.token_ids) <= 8
    assert all(0 <= token < engine.llama.n_vocab() for token in generation.token_ids)
    engine.close()
