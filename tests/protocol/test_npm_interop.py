"""Interop with the real npm clients (arbundles, arweave-js) in tests/interop/node_modules."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from permastore.protocol import ans104, b64url, bundle, merkle
from permastore.protocol.errors import InvalidSignature
from permastore.protocol.signers import Ed25519Signer, EthereumSigner, RsaSigner
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign, verify

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).with_name("protocol_interop.js")
NODE_MODULES = Path(__file__).parents[1] / "interop" / "node_modules"
ED_SEED = hashlib.sha256(b"ed25519 interop").digest()
ETH_KEY = hashlib.sha256(b"ethereum interop").digest()
ANCHOR = b"anchor-of-exactly-32-characters!"


def _npm(request: dict) -> dict:
    if shutil.which("node") is None or not (NODE_MODULES / "arbundles").is_dir():
        pytest.fail("interop needs node and `npm ci` in tests/interop")
    done = subprocess.run(
        ["node", str(SCRIPT)], input=json.dumps(request), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _npm_signer(kind, jwk):
    if kind == 1:
        return {"type": 1, "jwk": jwk}
    if kind == 2:
        public = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SEED).public_key().public_bytes_raw()
        return {"type": 2, "secret_hex": (ED_SEED + public).hex()}
    return {"type": 3, "key_hex": ETH_KEY.hex()}


def _our_signer(kind, jwk):
    return {1: lambda: RsaSigner(jwk), 2: lambda: Ed25519Signer(ED_SEED), 3: lambda: EthereumSigner(ETH_KEY)}[kind]()


TAGS = [("Content-Type", "text/plain"), ("App-Name", "permastore-interop"), ("Unicode", "héllo ✓")]


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_arbundles_items_verify_here(test_jwk, kind):
    target = b64url.encode(bytes(range(32)))
    specs = [
        {"signer": _npm_signer(kind, test_jwk), "data": b64url.encode(b"from arbundles"), "tags": [
            {"name": n, "value": v} for n, v in TAGS], "target": target, "anchor": ANCHOR.decode()},
        {"signer": _npm_signer(kind, test_jwk), "data": "", "tags": []},
    ]
    answer = _npm({"op": "signItems", "items": specs})
    full, bare = (b64url.decode(item["raw"]) for item in answer["items"])
    header = ans104.verify_item(full)
    assert header.id == answer["items"][0]["id"]
    assert header.signature_type == kind
    assert header.tags == [Tag.text(n, v) for n, v in TAGS]
    assert (header.target, header.anchor) == (bytes(range(32)), ANCHOR)
    assert ans104.parse_item(full)[1] == b"from arbundles"
    assert ans104.verify_item(bare).id == answer["items"][1]["id"]
    tampered = bytearray(full)
    tampered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        ans104.verify_item(bytes(tampered))


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_our_items_verify_in_arbundles(test_jwk, kind):
    signer = _our_signer(kind, test_jwk)
    items = [
        ans104.build_item(signer, b"from permastore", [Tag.text(n, v) for n, v in TAGS],
                          target=bytes(range(32)), anchor=ANCHOR),
        ans104.build_item(signer, b"", []),
    ]
    tampered = bytearray(items[0])
    tampered[-3] ^= 1
    answer = _npm({"op": "verifyItems", "items": [b64url.encode(i) for i in items + [bytes(tampered)]]})
    ok = [r["ok"] for r in answer["items"]]
    assert ok == [True, True, False]
    assert [r["id"] for r in answer["items"][:2]] == [ans104.parse_header(i).id for i in items]
    assert answer["items"][0]["tags"] == [{"name": n, "value": v} for n, v in TAGS]


def test_our_nested_bundle_reads_in_arbundles(test_jwk):
    leaf = ans104.build_item(EthereumSigner(ETH_KEY), b"leaf", [Tag(b"a", b"b")])
    inner = bundle.build_bundle([leaf])
    wrapper = ans104.build_item(
        Ed25519Signer(ED_SEED), inner, [Tag(b"Bundle-Format", b"binary"), Tag(b"Bundle-Version", b"2.0.0")]
    )
    plain = ans104.build_item(RsaSigner(test_jwk), b"plain", [])
    outer = bundle.build_bundle([plain, wrapper])
    answer = _npm({"op": "readBundle", "bundle": b64url.encode(outer)})
    assert answer["ok"] is True
    assert answer["ids"] == [ans104.parse_header(plain).id, ans104.parse_header(wrapper).id]
    assert _npm({"op": "readBundle", "bundle": b64url.encode(inner)}) == {
        "ok": True, "ids": [ans104.parse_header(leaf).id]}


SIZES = [1, 4, 32767, 32768, 262143, 262144, 262145, 262144 + 32767, 262144 + 32768,
         524288, 3 * 262144 - 1, 3 * 262144 + 1000, 5 * 262144 + 40000, 1_048_576]


def test_data_roots_and_proofs_match_arweave_js(tmp_path):
    files = []
    for size in SIZES:
        data = (hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1))[:size]
        path = tmp_path / f"d{size}"
        path.write_bytes(data)
        files.append(path)
    answer = _npm({"op": "dataRoots", "files": [str(p) for p in files]})
    for path, js in zip(files, answer["files"]):
        data = path.read_bytes()
        chunks = merkle.chunks_for(data)
        # arweave-js hashes the empty trailing chunk into the root but leaves it out of its list.
        listed = [c for c in chunks if c.max_byte_range > c.min_byte_range]
        assert len(chunks) - len(listed) == (1 if len(data) % merkle.MAX_CHUNK_SIZE == 0 else 0)
        assert [[b64url.encode(c.data_hash), c.min_byte_range, c.max_byte_range] for c in listed] == js["chunks"]
        assert b64url.encode(merkle.compute_root(chunks)) == js["data_root"]
        assert [[p.offset, b64url.encode(p.proof)] for p in merkle.build_proofs(chunks)] == js["proofs"]


def test_transactions_cross_verify(test_jwk):
    data = bytes(range(256)) * 2000
    js_tx = _npm({"op": "signTx", "jwk": test_jwk, "data": b64url.encode(data),
                  "last_tx": b64url.encode(bytes(range(48))), "reward": "12345",
                  "target": b64url.encode(bytes(range(32))), "quantity": "7",
                  "tags": [["Content-Type", "application/octet-stream"]]})["tx"]
    ours = Transaction.from_json(js_tx)
    verify(ours)
    assert ours.data_root == merkle.compute_root(merkle.chunks_for(data))

    mine = sign(Transaction(format=2, data=data, reward=99, tags=[Tag.text("k", "v")],
                            last_tx=bytes(32)), RsaSigner(test_jwk))
    forged = dict(mine.to_json(), reward="100")
    assert _npm({"op": "verifyTxs", "txs": [mine.to_json(), forged]}) == {"ok": [True, False]}
