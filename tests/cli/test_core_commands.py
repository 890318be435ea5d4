"""The core CLI: put, get, info, query, fsck, run as the real console script."""

from __future__ import annotations

import json
import os
import random

import pytest

from permastore.protocol import ans104
from tests.helpers.keys import ARWEAVE_VECTORS as VECTORS


def last_line(result) -> str:
    return result.stdout.decode().strip().splitlines()[-1]


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(random.Random(5).randbytes(5_000_000))
    return path


def test_put_prints_id_and_get_returns_exact_bytes(cli, payload, tmp_path):
    object_id = last_line(cli("put", payload, "--tag", "App=cli-test", "--tag", "Note=a=b"))
    assert len(object_id) == 43
    out = tmp_path / "out.bin"
    cli("get", object_id, "-o", out)
    assert out.read_bytes() == payload.read_bytes()
    assert cli("get", object_id).stdout == payload.read_bytes()
    info = json.loads(cli("info", object_id).stdout)
    assert info["id"] == object_id and info["data_size"] == 5_000_000 and info["kind"] == "tx"  # past one chunk: an L1 tx
    assert {"name": "Note", "value": "a=b"} in info["tags"]


def test_put_from_stdin_and_content_type(cli):
    object_id = last_line(cli("put", "-", "--content-type", "text/markdown", input=b"# hello\n"))
    info = json.loads(cli("info", object_id).stdout)
    assert info["content_type"] == "text/markdown"
    assert cli("get", object_id).stdout == b"# hello\n"


def test_piped_output_has_no_progress_bar(cli, payload):
    result = cli("put", payload)
    assert result.stderr == b""
    assert len(result.stdout.decode().split()) == 1


def test_raw_item_keeps_its_own_id_and_bytes(cli, tmp_path):
    item = VECTORS / "goar" / "test.item"
    object_id = last_line(cli("put", "--raw", item))
    assert object_id == ans104.parse_header(item.read_bytes()).id
    header, data = ans104.parse_item(item.read_bytes())
    assert cli("get", object_id).stdout == data


def test_raw_signed_tx_json(cli, tmp_path):
    line = (VECTORS / "mainnet-tx-headers.jsonl").read_text().splitlines()
    v1 = next(json.loads(x) for x in line if json.loads(x)["format"] == 1 and json.loads(x)["data"])
    path = tmp_path / "tx.json"
    path.write_text(json.dumps(v1))
    assert last_line(cli("put", "--raw", path)) == v1["id"]
    assert json.loads(cli("info", v1["id"]).stdout)["kind"] == "tx"


def test_query_by_tag_and_owner(cli, tmp_path):
    ids = []
    for n in range(3):
        ids.append(last_line(cli("put", "-", "--tag", f"Group={'a' if n < 2 else 'b'}", input=f"{n}".encode())))
    assert cli("query", "--tag", "Group=a").stdout.decode().split() == [ids[1], ids[0]]
    assert cli("query", "--tag", "Group=a", "--tag", "Group=b").stdout.decode().split() == ids[::-1]
    owner = json.loads(cli("info", ids[0]).stdout)["owner_address"]
    assert cli("query", "--owner", owner, "--limit", "2").stdout.decode().split() == [ids[2], ids[1]]
    assert cli("query", "--tag", "Group=none").stdout == b""


def test_fsck_passes_then_names_the_corrupt_object_and_chunk(cli, payload):
    object_id = last_line(cli("put", payload))
    assert cli("fsck").stdout.decode().startswith("ok:")
    segment = next((cli.data_dir / "segments").glob("obj-*.seg"))
    os.chmod(segment, 0o644)
    with open(segment, "r+b") as f:
        f.seek(300_000)  # inside chunk 1
        byte = f.read(1)
        f.seek(300_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = cli("fsck", check=False)
    assert result.returncode != 0
    assert f"{object_id} chunk 1" in result.stdout.decode()
    # get refuses too, and leaves no partial file behind.
    out = cli.data_dir.parent / "out.bin"
    result = cli("get", object_id, "-o", out, check=False)
    assert result.returncode != 0 and "chunk 1" in result.stderr.decode()
    assert not out.exists() and not list(out.parent.glob(".out.bin*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["get", "not-an-id"], "43 base64url"),
        (["get", "A" * 43], "not found"),
        (["get", "-" + "A" * 42], "not found"),  # an ID may start with '-'
        (["info", "A" * 43], "not found"),
        (["put", "/no/such/file"], "cannot read"),
        (["put", "-", "--tag", "novalue"], "NAME=VALUE"),
        (["query", "--after", "not-a-cursor"], "invalid cursor"),
        (["query", "--limit", "-1"], "must not be negative"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(cli, args, message):
    result = cli(*args, check=False, input=b"x")
    assert result.returncode != 0
    err = result.stderr.decode()
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_raw_garbage_and_bad_tx_json_are_refused(cli, tmp_path, payload):
    result = cli("put", "--raw", payload, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr.decode()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 2, "id": "x"')
    result = cli("put", "--raw", bad, check=False)
    assert result.returncode != 0 and len(result.stderr.decode().strip().splitlines()) == 1
    assert cli("query", "--tag", "App=x").stdout == b""


def test_unusable_data_folder_is_one_line(cli, tmp_path):
    (cli.data_dir / "index.sqlite").write_bytes(b"not a database " * 100)
    result = cli("fsck", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "not a database" in err and len(err.strip().splitlines()) == 1


def test_progress_bar_on_a_terminal(cli, payload):
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real size: 100 columns
    try:
        proc = subprocess.run(
            [cli.script, "--data", str(cli.data_dir), "put", str(payload)],
            stdout=subprocess.PIPE, stderr=terminal, timeout=120, env=cli.env,
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                piece = os.read(controller, 65536)
            except OSError:  # the terminal side is closed: all read
                break
            if not piece:
                break
            shown += piece
    finally:
        os.close(controller)
    assert proc.returncode == 0 and len(proc.stdout.decode().split()) == 1
    assert b"put" in shown and b"100%" in shown
