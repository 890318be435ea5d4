"""The call routes' documented answers, with a model that runs: schemathesis with a few examples each.

tests/gateway/test_openapi.py covers every route on a node without a model (a call is a
404 there). Here the tiny model is stored and its ID is offered as `model` half of the
time, so the OpenAI and Ollama call routes answer 200 (JSON, server-sent events, NDJSON)
and schemathesis checks those answers against the document too. Every example runs a
model call in a herder worker, hence few examples, and only the routes that take a model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from inference.records import ResultRecord
from tests.inference.conftest import tiny_gguf  # noqa: F401  (the fixture)
from tests.inference.inference_server import start_server

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
SIGNED_CONFIG_FILE = Path(__file__).with_name("schemathesis-signed.toml")
CALL_ROUTES = r"^/(v1/(chat/)?completions|api/(generate|chat|embed|embeddings|show))$"
EXAMPLES = 10


def test_call_routes_answer_as_documented_with_a_model(tmp_path, tiny_gguf):  # noqa: F811
    server = start_server(tmp_path / "data")
    try:
        model_id = server.add_model(tiny_gguf)
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG_FILE.read_text() + "\n" + SIGNED_CONFIG_FILE.read_text() + "\n[parameters]\n"
                          '"body.model" = { dictionary = "model", probability = 0.5 }\n\n'
                          f"[dictionaries.model]\nvalues = {json.dumps([model_id])}\n")
        command = [
            str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run", f"{server.url}/openapi.json",
            "--checks", "all", "--max-examples", str(EXAMPLES), "--include-path-regex", CALL_ROUTES,
            "--workers", "1", "--seed", "7", "--generation-database", "none", "--no-color",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        (tmp_path / "schemathesis-report.txt").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
        assert "passed" in result.stdout and " 0 passed" not in result.stdout
        query = '{ transactions(tags: [{name: "Type", values: ["%s"]}], first: 100) { edges { node { id } } } }'
        found = httpx.post(f"{server.url}/graphql", json={"query": query % ResultRecord.type}, timeout=30).json()
        assert len(found["data"]["transactions"]["edges"]) >= 3  # calls really ran, and were recorded
    finally:
        server.stop()
