"""Models by ID in a real store: header tags, listing, verified loading without a copy."""

import os

import pytest

from inference import models
from inference.engine import Engine
from inference.errors import ModelCorrupt, ModelNotFound, NotAModel
from inference.sampling import EngineSettings, SamplingParams
from permastore.protocol.tags import Tag

from .conftest import make_gguf


def test_add_tags_the_model_from_its_header(inference, store, model_id, tiny_gguf):
    info = store.info(model_id)
    tags = models.tag_dict(info)
    assert tags["Type"] == "model"
    assert tags["Model-Architecture"] == "llama"
    assert tags["Model-Name"] == "tiny-llama"
    assert tags["Model-Quantization"] == "F16"
    assert tags["Model-Context-Length"] == "512"
    assert tags["Model-Chat-Template"] == "true"
    assert int(tags["Model-Parameter-Count"]) == models.read_gguf_metadata(tiny_gguf).parameter_count
    assert info.content_type == "application/octet-stream"
    assert info.data_size == tiny_gguf.stat().st_size
    assert b"".join(store.read(model_id)) == tiny_gguf.read_bytes()


def test_adding_the_same_bytes_again_gives_the_same_id(inference, store, model_id, tiny_gguf):
    assert inference.models.add(tiny_gguf) == model_id


def test_model_without_template_is_tagged_so(inference, store, tmp_path):
    path = make_gguf(tmp_path / "plain.gguf", chat_template=None, name="plain")
    tags = models.tag_dict(store.info(inference.models.add(path)))
    assert tags["Model-Chat-Template"] == "false"
    assert tags["Model-Name"] == "plain"


def test_list_finds_models_only(inference, store, model_id, tmp_path):
    import io

    store.put_data(io.BytesIO(b"not a model"), tags=[Tag.text("Type", "note")])
    other = inference.models.add(make_gguf(tmp_path / "b.gguf", name="other"))
    listed = {entry.id: entry for entry in inference.models.list()}
    assert set(listed) == {model_id, other}
    assert listed[other].tags["Model-Name"] == "other"


def test_not_a_gguf_file_is_refused_and_nothing_stored(inference, store, tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(NotAModel, match="not a GGUF"):
        inference.models.add(bogus)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(NotAModel):
        inference.models.add(truncated)
    assert inference.models.list() == []


def test_resolve_gives_the_exact_bytes(inference, store, model_id, tiny_gguf):
    path = inference.models.resolve(model_id)
    assert path.read_bytes() == tiny_gguf.read_bytes()


def test_large_model_is_mapped_from_its_segment_without_a_copy(inference, store, tmp_path):
    big = make_gguf(tmp_path / "big.gguf", n_ff=8192, name="big")
    assert big.stat().st_size > 4 << 20  # past the store's small-object limit: a dedicated segment
    big_id = inference.models.add(big)
    path = inference.models.resolve(big_id)
    assert "views" not in path.parts  # the segment itself, not a materialised copy
    assert path.stat().st_size == big.stat().st_size
    assert path.read_bytes() == big.read_bytes()
    engine = Engine.from_path(path, EngineSettings(n_ctx=64, n_batch=16, n_ubatch=16, n_threads=1), model_id=big_id)
    try:
        assert engine.model_path == path
        assert engine.generate("hi", SamplingParams(seed=1, max_tokens=3)).token_ids
    finally:
        engine.close()


def test_unknown_and_malformed_ids(inference, store):
    with pytest.raises(ModelNotFound, match="not stored here"):
        inference.models.resolve("A" * 43)
    with pytest.raises(ModelNotFound, match="not a valid ID"):
        inference.models.resolve("short")


def test_data_not_tagged_as_model_is_refused(inference, store):
    import io

    info = store.put_data(io.BytesIO(b"GGUF but not really"), tags=[Tag.text("Type", "note")])
    with pytest.raises(NotAModel, match="not tagged Type=model"):
        inference.models.resolve(info.id)


def test_corrupted_weights_fail_verification(inference, store, tmp_path):
    big = make_gguf(tmp_path / "big.gguf", n_ff=8192, name="big")
    big_id = inference.models.add(big)
    segment = store.object_path(big_id)
    os.chmod(segment, 0o644)
    with open(segment, "r+b") as f:
        f.seek(1 << 20)
        byte = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelCorrupt, match=big_id):
        inference.models.resolve(big_id)
