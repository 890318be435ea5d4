"""Issue 7 points 1 and 13 through the real `permastore` command: hostile inputs are one-line
refusals with a non-zero exit, and `fsck` / `info` always open the folder and say what is wrong."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from tests.store.hostile import BAD_RSA_OWNERS, flipped, forged_rsa_item, forged_rsa_tx, item_id, mixed_bundle

ECDSA_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "ario" / "signed_ecdsa_tx.json"
ED = Ed25519Signer(bytes(range(32)))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def one_line_error(result) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("owner", BAD_RSA_OWNERS.values(), ids=BAD_RSA_OWNERS.keys())
def test_put_raw_of_a_malformed_rsa_owner_is_refused(cli, tmp_path, owner):
    tx = write(tmp_path, "tx.json", json.dumps(forged_rsa_tx(owner)).encode())
    assert "signature" in one_line_error(cli("put", "--raw", tx, check=False))
    item = write(tmp_path, "item.bin", forged_rsa_item(owner))
    assert "signature" in one_line_error(cli("put", "--raw", item, check=False))
    assert cli("fsck").stdout.decode().startswith("ok: 0 objects")


def test_bundle_with_bad_items_is_stored_and_fsck_and_info_report_them(cli, tmp_path):
    signed_bundle, good, bad = mixed_bundle(ED)
    bundle_id = cli("put", "--raw", write(tmp_path, "bundle.bin", signed_bundle)).stdout.decode().strip()
    assert bundle_id == item_id(signed_bundle)
    for item in good:
        assert json.loads(cli("info", item_id(item)).stdout)["bundled_in"] == bundle_id
    err = one_line_error(cli("info", item_id(bad[0]), check=False))
    assert f"refused from bundle {bundle_id}" in err and "signature" in err
    out = cli("fsck").stdout.decode()
    assert f"{len(bad)} bundle item(s) refused" in out
    assert all(f"{item_id(item)} refused from bundle {bundle_id}" in out for item in bad)


def test_a_folder_left_mid_unbundling_by_a_crash_opens_for_fsck_and_info(cli, tmp_path):
    """The bricked state of issue 7: the bundle committed 'pending' with a bad item inside."""
    signed_bundle, good, bad = mixed_bundle(ED)
    bundle_id = cli("put", "--raw", write(tmp_path, "bundle.bin", signed_bundle)).stdout.decode().strip()
    conn = sqlite3.connect(cli.data_dir / "index.sqlite")
    with conn:
        conn.execute("UPDATE objects SET bundle_state = 'pending' WHERE id = ?", (bundle_id,))
        conn.execute("DELETE FROM objects WHERE bundled_in = ?", (bundle_id,))
        conn.execute("DELETE FROM bundle_refusals")
    conn.close()
    out = cli("fsck").stdout.decode()
    assert out.count("refused from bundle") == len(bad) and "ok: " in out
    assert json.loads(cli("info", item_id(good[2])).stdout)["bundled_in"] == bundle_id
    assert cli("get", item_id(good[1])).stdout == b"good sibling 1"


def test_put_raw_of_a_tampered_copy_of_a_stored_item_is_refused(cli, tmp_path):
    item = ans104.build_item(ED, b"original bytes", [Tag(b"App", b"cli")])
    original = write(tmp_path, "item.bin", item)
    item_id_text = cli("put", "--raw", original).stdout.decode().strip()
    tampered = write(tmp_path, "tampered.bin", flipped(item, -1))
    assert "signature" in one_line_error(cli("put", "--raw", tampered, check=False))
    assert cli("put", "--raw", original).stdout.decode().strip() == item_id_text
    assert cli("get", item_id_text).stdout == b"original bytes"


def test_put_raw_of_a_same_id_variant_of_a_stored_ecdsa_tx_is_refused(cli, tmp_path):
    genuine = json.loads(ECDSA_FIXTURE.read_text())
    tx_id = cli("put", "--raw", write(tmp_path, "tx.json", ECDSA_FIXTURE.read_bytes())).stdout.decode().strip()
    assert tx_id == genuine["id"]
    info = json.loads(cli("info", tx_id).stdout)
    assert info["signature_type"] == 3 and len(info["owner"]) == 44  # 33-byte compressed key
    variant = write(tmp_path, "variant.json", json.dumps(dict(genuine, quantity="2")).encode())
    err = one_line_error(cli("put", "--raw", variant, check=False))
    assert "other signed fields" in err or "signature" in err


def test_put_raw_of_deeply_nested_json_is_one_line(cli, tmp_path):
    deep = write(tmp_path, "deep.json", b"{\"a\":" + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert "not valid" in one_line_error(cli("put", "--raw", deep, check=False))
