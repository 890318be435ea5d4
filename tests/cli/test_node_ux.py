"""Issue 10 points 11 and 12 through the real CLI: one server per data folder; the same put twice is one object."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import httpx

from .conftest import run_permastore, start_serve

SMALL = b"the same small file\n"


def test_a_second_serve_on_a_held_folder_is_refused_naming_pid_and_port(cli, tmp_path):
    first = start_serve(tmp_path / "first.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        second = run_permastore("serve", "--data", cli.data_dir, "--port", "0", env=cli.env, timeout=60)
        assert second.returncode != 0
        message = second.stderr.decode()
        assert f"PID {first.process.pid}" in message
        assert first.url in message  # host and port
        assert "listening on" not in second.stdout.decode()
        assert httpx.get(f"{first.url}/info", timeout=10).status_code == 200  # the first one is untouched
    finally:
        assert first.stop() == 0
    again = start_serve(tmp_path / "again.log", "--data", str(cli.data_dir), env=cli.env)  # released on exit
    assert again.stop() == 0


def test_cli_commands_work_beside_a_running_server(cli, tmp_path):
    server = start_serve(tmp_path / "server.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        source = tmp_path / "notes.txt"
        source.write_bytes(SMALL)
        object_id = cli("put", source).stdout.decode().split()[-1]
        assert cli("get", object_id).stdout == SMALL
        assert object_id in cli("info", object_id).stdout.decode()
        answer = httpx.get(f"{server.url}/{object_id}", timeout=10)
        assert answer.status_code == 200 and answer.content == SMALL  # the server sees the CLI's put
    finally:
        assert server.stop() == 0


def test_a_killed_server_leaves_no_stuck_lock(cli, tmp_path):
    first = start_serve(tmp_path / "first.log", "--data", str(cli.data_dir), env=cli.env)
    first.stop(sig=signal.SIGKILL)
    second = start_serve(tmp_path / "second.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        assert f"from PID {first.process.pid}, which is no longer running" in second.log()
        holder = json.loads((cli.data_dir / "serve.lock").read_text())
        assert holder == {"pid": second.process.pid, "url": second.url}
    finally:
        assert second.stop() == 0
    assert (cli.data_dir / "serve.lock").read_text() == ""  # a clean exit leaves no holder named


def test_a_lock_file_naming_a_dead_pid_is_taken_over(cli, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (cli.data_dir / "serve.lock").write_text(json.dumps({"pid": gone.pid, "url": "http://127.0.0.1:1"}))
    server = start_serve(tmp_path / "server.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        assert f"from PID {gone.pid}" in server.log()
    finally:
        assert server.stop() == 0


def put_id(cli, *args) -> tuple[str, str]:
    result = cli("put", *args)
    return result.stdout.decode().split()[-1], result.stderr.decode()


def test_the_same_file_with_the_same_tags_is_stored_once(cli, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_bytes(SMALL)
    first, _ = put_id(cli, source, "--tag", "App=test")
    second, note = put_id(cli, source, "--tag", "App=test")
    assert second == first and "already stored" in note
    copy = tmp_path / "elsewhere" / "notes.txt"  # where the file lies does not matter, its bytes do
    copy.parent.mkdir()
    copy.write_bytes(SMALL)
    assert put_id(cli, copy, "--tag", "App=test")[0] == first
    fresh, note = put_id(cli, source, "--tag", "App=test", "--again")
    assert fresh != first and "already stored" not in note
    others = {
        put_id(cli, source)[0],  # no App tag
        put_id(cli, source, "--tag", "App=other")[0],
        put_id(cli, source, "--tag", "App=test", "--content-type", "application/json")[0],
    }
    assert len(others) == 3 and not others & {first, fresh}
    changed = tmp_path / "changed.txt"
    changed.write_bytes(SMALL.replace(b"small", b"smell"))  # same size, other bytes
    assert put_id(cli, changed, "--tag", "App=test")[0] not in {first, fresh}
    assert cli("get", first).stdout == SMALL


def test_the_same_large_file_is_one_l1_tx(cli, tmp_path):
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 256 * 1024 + 1234)  # several chunks: stored as an L1 tx
    source.write_bytes(data)
    first, _ = put_id(cli, source)
    assert put_id(cli, source)[0] == first
    tail_changed = tmp_path / "big2.bin"
    tail_changed.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the same first chunk, another last one
    other, note = put_id(cli, tail_changed)
    assert other != first and "already stored" not in note
    assert cli("get", other).stdout == tail_changed.read_bytes()


def test_an_empty_file_twice_is_one_object(cli, tmp_path):
    source = tmp_path / "empty"
    source.write_bytes(b"")
    first, _ = put_id(cli, source, "--tag", "Kind=empty")
    assert put_id(cli, source, "--tag", "Kind=empty")[0] == first
    assert put_id(cli, source, "--tag", "Kind=other")[0] != first


def test_tx_route_of_a_put_says_what_it_is(cli, tmp_path):
    from permastore.protocol import ans104, b64url
    from permastore.protocol.wallet import address_of

    small, big = tmp_path / "note.txt", tmp_path / "big.bin"
    small.write_bytes(SMALL)
    big.write_bytes(os.urandom(2 * 256 * 1024 + 10))
    item_id, _ = put_id(cli, small, "--tag", "App=test")
    tx_id, _ = put_id(cli, big)
    address = cli("address").stdout.decode().split()[-1]
    server = start_serve(tmp_path / "server.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answer = http.get(f"/tx/{item_id}")
            assert answer.status_code == 200, answer.text
            doc = answer.json()
            assert doc["format"] == "ans104" and doc["id"] == item_id and doc["bundled_in"] is None
            assert doc["owner_address"] == address == address_of(b64url.decode(doc["owner"]))
            tags = [(b64url.decode(t["name"]), b64url.decode(t["value"])) for t in doc["tags"]]
            assert tags == [(b"App", b"test"), (b"Content-Type", b"text/plain")]
            assert doc["data_size"] == str(len(SMALL))
            assert http.get(doc["data_url"]).content == SMALL
            header = ans104.parse_header(http.get(doc["header_url"]).content)
            assert header.id == item_id and b64url.encode(header.signature) == doc["signature"]
            # A large put is an L1 tx: the Arweave node's answers (202 until mined, then its JSON).
            if http.get(f"/tx/{tx_id}").status_code == 202:
                http.post("/mine")
            mined = http.get(f"/tx/{tx_id}").json()
            assert mined["format"] == 2 and mined["id"] == tx_id and mined["data_size"] == str(2 * 256 * 1024 + 10)
            assert http.get("/tx/" + "A" * 43).status_code == 404
    finally:
        assert server.stop() == 0
