"""The llama-cpp-python adapter: every private part this project uses still works on the pinned release.

If a new llama-cpp-python moves `llama_cpp._internals.LlamaModel`, `Llama._model` or
`LlamaModel.vocab`, these fail here instead of in a user's call.
"""

from __future__ import annotations

from inference import llama_adapter
from inference.models import read_gguf_metadata
from inference.sampling import EngineSettings

SETTINGS = EngineSettings(n_ctx=64, n_batch=16, n_ubatch=16, n_threads=1)


def test_versions_and_build_are_readable():
    assert llama_adapter.version().startswith("0.3.")
    assert llama_adapter.native_version()
    assert llama_adapter.system_info()
    assert llama_adapter.library_dir().is_dir()
    assert any(llama_adapter.library_dir().glob("*llama*"))


def test_the_vocab_only_model_tokenizes_as_the_loaded_model(tiny_gguf):
    vocab = llama_adapter.load_vocabulary(tiny_gguf)
    llama = llama_adapter.load_llama(tiny_gguf, SETTINGS)
    try:
        for text, special in [("tell a joke", False), ("<|im_start|>user\nhi<|im_end|>", True), ("", False)]:
            from_vocab = llama_adapter.tokenize_prompt(vocab, text, special)
            assert from_vocab == llama_adapter.tokenize_prompt(llama, text, special)
            assert from_vocab[:1] == [llama.token_bos()]  # BOS once: the tiny model asks for it
        bos = llama.detokenize([llama.token_bos()]).decode()
        assert llama_adapter.tokenize_prompt(vocab, bos + "hi", True).count(llama.token_bos()) == 1
    finally:
        llama.close()
        vocab.close()


def test_end_of_generation_knows_the_models_end_token(tiny_gguf):
    llama = llama_adapter.load_llama(tiny_gguf, SETTINGS)
    try:
        is_end = llama_adapter.end_of_generation(llama)
        assert is_end(llama.token_eos())
        assert not is_end(llama.token_bos())
        assert read_gguf_metadata(tiny_gguf).eos_token == llama.detokenize([llama.token_eos()], special=True).decode()
    finally:
        llama.close()
