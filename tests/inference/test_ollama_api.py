"""Issue 11: the Ollama API, through the official `ollama` Python client, unchanged, against a real node.

The node is a real server on 127.0.0.1 with real herder workers running llama.cpp on the
tiny fixture model. The `record` field is invisible through the client (its models drop
unknown fields), so records are read with plain HTTP.
"""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.inference.conftest import make_gguf
from tests.inference.inference_server import start_server

USER = [{"role": "user", "content": "tell me about llamas"}]


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("ollama") / "data")
    models = server.service.inference.models
    server.model_id = models.add(tiny_gguf, name="tiny:v1")
    models.name(server.model_id, "tiny")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(node):
    return ollama.Client(host=node.url)


def test_version_and_list_show_names_and_ids(node, client):
    assert httpx.get(f"{node.url}/api/version").json() == {"version": "0.12.0"}
    listed = {m.model: m for m in client.list().models}
    assert set(listed) == {"tiny:latest", "tiny:v1", f"{node.model_id}:latest"}
    entry = listed["tiny:v1"]
    assert entry.size == node.store.info(node.model_id).data_size
    assert entry.details.format == "gguf" and entry.details.family == "llama"
    assert entry.details.quantization_level == "F16" and entry.details.parameter_size.endswith("K")
    assert len(entry.digest) == 64 and listed["tiny:latest"].digest == entry.digest
    raw = httpx.get(f"{node.url}/api/tags").json()["models"]
    assert {m["name"] for m in raw} == set(listed)  # Open WebUI keys by name, LangChain by model


def test_show_by_name_and_by_id(node, client):
    for ref in ("tiny", "tiny:v1", node.model_id, f"{node.model_id}:latest"):
        shown = client.show(ref)
        assert shown.details.family == "llama"
        assert shown.modelinfo["general.architecture"] == "llama"
        assert shown.modelinfo["llama.context_length"] == 512
        assert shown.capabilities == ["completion"]
        assert "<|im_start|>" in shown.template  # the GGUF's own chat template
        assert "num_ctx 512" in shown.parameters


def test_generate_is_seeded_and_streams_the_same_text(client):
    request = dict(model="tiny", prompt="Once upon a time", options={"seed": 42, "num_predict": 16, "temperature": 0.7})
    first = client.generate(**request)
    again = client.generate(**request)
    assert first.response and first.response == again.response
    assert first.done is True and first.done_reason in ("stop", "length")
    assert isinstance(first.eval_count, int) and 0 < first.eval_count <= 16
    assert isinstance(first.prompt_eval_count, int) and first.total_duration > 0
    chunks = list(client.generate(stream=True, **request))
    assert chunks[-1].done is True and all(not c.done for c in chunks[:-1])
    assert "".join(c.response for c in chunks) == first.response
    other = client.generate(model="tiny", prompt="Once upon a time", options={"seed": 43, "num_predict": 16})
    assert other.response != first.response


def test_chat_streaming_and_not(client):
    request = dict(model="tiny:v1", messages=USER, options={"seed": 7, "num_predict": 12})
    whole = client.chat(**request)
    assert whole.message.role == "assistant" and whole.message.content
    chunks = list(client.chat(stream=True, **request))
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content
    assert chunks[-1].done and chunks[-1].done_reason in ("stop", "length")
    assert chunks[-1].prompt_eval_count == whole.prompt_eval_count and chunks[-1].eval_count == whole.eval_count


def test_names_and_ids_and_latest_name_the_same_model(node, client):
    texts = set()
    for ref in ("tiny", "tiny:latest", "TINY:LATEST", node.model_id, f"{node.model_id}:latest"):
        reply = client.generate(model=ref, prompt="hi", options={"seed": 5, "num_predict": 8})
        assert reply.model == ref  # Ollama answers with the name it was asked for
        texts.add(reply.response)
    assert len(texts) == 1
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=f"{node.model_id}:v1", prompt="hi")
    assert refused.value.status_code == 404  # an ID has no tag but latest


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_models_are_404_with_the_reason(client, stream):
    def consume(result):
        return list(result) if stream else result

    calls = [
        lambda: consume(client.generate(model="nosuch", prompt="x", stream=stream)),
        lambda: consume(client.chat(model="nosuch:7b", messages=USER, stream=stream)),
        lambda: consume(client.pull("nosuch", stream=stream)),
    ]
    for call in calls:
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == 404
        assert "model 'nosuch" in refused.value.error and "not found" in refused.value.error
    for call in (lambda: client.show("nosuch"), lambda: client.delete("nosuch"), lambda: client.embed("nosuch", "x")):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert (refused.value.status_code, refused.value.error) == (404, "model 'nosuch' not found")


def test_the_record_field_and_replay_of_an_ollama_call(node):
    body = {"model": "tiny", "messages": USER, "options": {"seed": 11, "num_predict": 10}, "stream": False}
    with node.client() as http:
        answer = http.post("/api/chat", json=body)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
        record = answer.json()["record"]
        assert set(record) == {"process", "message", "result"}
        result = http.get(f"/results/{record['message']}").json()
        assert result["text"] == answer.json()["message"]["content"] and result["seed"] == 11
        message = node.service.inference.records.load(record["message"]).record
        assert message.input == {"messages": USER}
        # The effective sampling is what was recorded: Ollama's defaults where options were silent.
        assert (message.sampling["top_p"], message.sampling["min_p"], message.sampling["max_tokens"]) == (0.9, 0.0, 10)
        replayed = http.post(f"/replay/{record['message']}").json()
        assert replayed["identical"] is True, replayed
        assert replayed["summary"].startswith("identical")
        # Streamed: the record rides on the final line; no blank lines anywhere.
        with http.stream("POST", "/api/generate", json={"model": "tiny", "prompt": "hi",
                                                         "options": {"seed": 2, "num_predict": 6}}) as streamed:
            assert streamed.headers["content-type"] == "application/x-ndjson"
            lines = list(streamed.iter_lines())
        assert lines and all(line.strip() for line in lines)
        last = json.loads(lines[-1])
        assert last["done"] is True and set(last["record"]) == {"process", "message", "result"}
        assert http.post(f"/replay/{last['record']['result']}").json()["identical"] is True


def test_options_that_shape_the_process_spawn_one_and_record_it(node, client):
    reply = client.generate(model="tiny", prompt="hi", options={"seed": 1, "num_predict": 4, "num_ctx": 256,
                                                                  "repeat_last_n": 32, "mirostat": 0, "num_gpu": 1})
    with node.client() as http:
        record = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                  "options": {"seed": 1, "num_predict": 4, "num_ctx": 256,
                                                              "repeat_last_n": 32}}).json()["record"]
        default = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                   "options": {"seed": 1}}).json()["record"]
    process = node.service.inference.processes.get(record["process"])
    assert (process.settings.n_ctx, process.settings.penalty_last_n) == (256, 32)
    assert process.record.model == node.model_id
    assert reply.response == node.service.inference.records.load(record["result"]).record.text
    # No num_predict: until the context is full (Ollama's -1), recorded as the process's context.
    assert default["process"] != record["process"]
    message = node.service.inference.records.load(default["message"]).record
    assert message.sampling["max_tokens"] == node.service.inference.processes.get(default["process"]).settings.n_ctx


@pytest.mark.parametrize("stream", [False, True])
def test_what_this_node_cannot_honour_is_a_clear_400(client, stream):
    png = b"\x89PNG\r\n\x1a\n"
    refusals = [
        (lambda: client.generate(model="tiny", prompt="x", images=[png], stream=stream), "does not support vision"),
        (lambda: client.chat(model="tiny", messages=[{**USER[0], "images": [png]}], stream=stream),
         "does not support vision"),
        (lambda: client.chat(model="tiny", messages=USER, stream=stream,
                             tools=[{"type": "function", "function": {"name": "f", "description": "d",
                                                                       "parameters": {"type": "object"}}}]),
         "does not support tools"),
        (lambda: client.generate(model="tiny", prompt="x", format="json", stream=stream), "format"),
        (lambda: client.generate(model="tiny", prompt="x", template="{{ .Prompt }}", stream=stream), "template"),
        (lambda: client.generate(model="tiny", prompt="x", raw=True, system="s", stream=stream), "raw mode"),
        (lambda: client.generate(model="tiny", prompt="x", think=True, stream=stream), "does not support thinking"),
        (lambda: client.generate(model="tiny", prompt="x", options={"seed": "one"}, stream=stream),
         'option "seed" must be of type integer'),
        (lambda: client.generate(model="tiny", prompt="x", options={"top_p": 2}, stream=stream), "top_p"),
        (lambda: client.generate(model="tiny", prompt="x", options={"num_ctx": 1 << 20}, stream=stream), "n_ctx"),
    ]
    for call, reason in refusals:
        with pytest.raises(ollama.ResponseError) as refused:
            result = call()
            if stream:
                list(result)
        assert refused.value.status_code == 400, refused.value.error
        assert reason in refused.value.error


def test_generate_with_system_and_raw(node, client):
    with node.client() as http:
        system = http.post("/api/generate", json={"model": "tiny", "prompt": "cats", "system": "Be brief",
                                                  "stream": False, "options": {"seed": 3, "num_predict": 4}}).json()
        raw = http.post("/api/generate", json={"model": "tiny", "prompt": "cats", "raw": True, "stream": False,
                                               "options": {"seed": 3, "num_predict": 4}}).json()
    records = node.service.inference.records
    rendered = records.load(system["record"]["message"]).record.rendered_prompt
    assert "<|im_start|>system\nBe brief<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert records.load(raw["record"]["message"]).record.rendered_prompt == "cats"


def test_a_model_without_a_template_generates_raw_and_refuses_chat(node, client, tmp_path):
    plain = node.service.inference.models.add(make_gguf(tmp_path / "plain.gguf", chat_template=None, name="plain"),
                                              name="plain")
    reply = client.generate(model="plain", prompt="cats", system="Be brief", options={"seed": 3, "num_predict": 3})
    assert reply.done
    with node.client() as http:
        recorded = http.post("/api/generate", json={"model": plain, "prompt": "cats", "stream": False,
                                                    "options": {"seed": 3, "num_predict": 3}}).json()
    assert node.service.inference.records.load(recorded["record"]["message"]).record.rendered_prompt == "cats"
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model="plain", messages=USER)
    assert refused.value.status_code == 400 and '"plain" does not support chat' in refused.value.error


def test_empty_prompt_loads_and_ps_lists_models_in_use(node, client):
    loaded = client.generate(model="tiny")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    assert client.chat(model="tiny", messages=[]).done_reason == "load"
    client.generate(model="tiny:v1", prompt="x", options={"seed": 1, "num_predict": 2})
    running = client.ps().models
    assert running and running[0].model == "tiny:v1"
    assert running[0].size == node.store.info(node.model_id).data_size and running[0].expires_at is not None


def test_pull_of_a_held_model_and_what_a_permanent_store_refuses(node, client):
    assert client.pull("tiny").status == "success"
    statuses = [p.status for p in client.pull(node.model_id, stream=True)]
    assert statuses == ["pulling manifest", statuses[1], "verifying sha256 digest", "writing manifest", "success"]
    assert statuses[1].startswith("pulling ") and len(statuses[1]) == len("pulling ") + 12
    with pytest.raises(ollama.ResponseError) as refused:
        client.delete("tiny")
    assert refused.value.status_code == 403 and "permanent" in refused.value.error
    assert {m.model for m in client.list().models} >= {"tiny:latest"}  # nothing was deleted
    for call, status in ((lambda: client.create(model="x", from_="tiny"), 501),
                         (lambda: client.push("tiny"), 501)):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == status and "not supported" in refused.value.error


def test_copy_records_a_name(node, client):
    assert client.copy("tiny:v1", "copied:one").status == "success"
    assert client.show("copied:one").modelinfo["general.architecture"] == "llama"
    assert node.service.inference.models.model_id("copied:one") == node.model_id
    with pytest.raises(ollama.ResponseError) as refused:
        client.copy("tiny", "not valid")
    assert refused.value.status_code == 400 and "destination" in refused.value.error
    with pytest.raises(ollama.ResponseError) as refused:
        client.copy("nosuch", "x")
    assert refused.value.status_code == 404


def test_embed_is_refused_for_a_model_made_to_generate(client):
    for call in (lambda: client.embed(model="tiny", input="hello"),
                 lambda: client.embeddings(model="tiny", prompt="x")):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == 400 and '"tiny" does not support embedding' in refused.value.error
    assert "embedding" not in client.show("tiny").capabilities


def test_embed_with_a_model_whose_gguf_pools(node, client, tmp_path):
    models = node.service.inference.models
    models.add(make_gguf(tmp_path / "embedder.gguf", name="embedder", pooling_type=1), name="embedder")
    assert client.show("embedder").capabilities == ["completion", "embedding"]
    reply = client.embed(model="embedder", input=["hello world", "cats", "hello world"])
    vectors = reply.embeddings
    assert len(vectors) == 3 and len(vectors[0]) == 64  # the tiny model's embedding length
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in vectors)  # L2-normalised, as Ollama's
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert client.embed(model="embedder", input="hello world").embeddings == [vectors[0]]
    assert client.embeddings(model="embedder", prompt="hello world").embedding == vectors[0]
    short = client.embed(model="embedder", input="cats", dimensions=8).embeddings[0]
    assert len(short) == 8 and abs(sum(x * x for x in short) - 1) < 1e-6
    assert client.embed(model="embedder", input=[]).embeddings == []
    with node.client() as http:
        raw = http.post("/api/embed", json={"model": "embedder", "input": "cats"}).json()
        assert raw["prompt_eval_count"] > 0 and raw["total_duration"] > 0
        for bad, reason in (({"input": 3}, "invalid input type"), ({"input": "x", "dimensions": 65}, "dimensions"),
                            ({"input": "x " * 3000, "truncate": False}, "exceeds the context length")):
            refused = http.post("/api/embed", json={"model": "embedder", **bad})
            assert refused.status_code == 400 and reason in refused.json()["error"], refused.text
        assert http.post("/api/embed", json={"model": "embedder", "input": "x " * 3000}).status_code == 200


def test_pull_from_an_upstream_node(node, tmp_path):
    """A second node started with the first as its upstream pulls the model by ID, verified, and lists it."""
    second = start_server(tmp_path / "second", upstreams=[node.url])
    try:
        local = ollama.Client(host=second.url)
        assert local.list().models == []
        progress = list(local.pull(node.model_id, stream=True))
        statuses = [p.status for p in progress]
        assert statuses[0] == "pulling manifest" and statuses[-3:] == [
            "verifying sha256 digest", "writing manifest", "success"]
        size = node.store.info(node.model_id).data_size
        layer = [p for p in progress if p.status.startswith("pulling ") and p.digest]
        assert layer and layer[-1].completed == layer[-1].total == size
        assert [m.model for m in local.list().models] == [f"{node.model_id}:latest"]
        reply = local.generate(model=node.model_id, prompt="hi", options={"seed": 5, "num_predict": 8})
        here = ollama.Client(host=node.url).generate(model=node.model_id, prompt="hi",
                                                      options={"seed": 5, "num_predict": 8})
        assert reply.response == here.response  # same bytes, same seed, same text
        with pytest.raises(ollama.ResponseError) as refused:
            local.pull("E" * 43)
        assert refused.value.status_code == 404
    finally:
        second.stop()


def test_pull_without_upstreams_of_an_unknown_id_is_404(client):
    with pytest.raises(ollama.ResponseError) as refused:
        client.pull("E" * 43)
    assert refused.value.status_code == 404 and "not found" in refused.value.error
