"""Issue 10 point 4 through the real command: `put DIR` stores every file and an arweave/paths
manifest, `get MANIFEST -o DIR` writes the folder back with every path checked, and a real
`permastore serve` resolves paths through the manifest."""

from __future__ import annotations

import json
import os
import random
from urllib.parse import quote

import httpx
import pytest

from permastore.folders import MANIFEST_CONTENT_TYPE

from .conftest import start_serve, tree_of


def lines(result) -> list[str]:
    return result.stdout.decode().strip().splitlines()


def one_line_error(result) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def count(cli) -> int:
    return len(cli("query").stdout.split())


@pytest.fixture
def site(tmp_path):
    """A folder as a user has one: nested files, an index, odd but valid names, an empty file, a big file."""
    root = tmp_path / "site"
    files = {
        "index.html": b"<h1>home</h1>",
        "css/site.css": b"body { color: red }",
        "data/table.json": b'{"rows": 3}',
        "data/big.bin": random.Random(3).randbytes(600_000),
        "donn\u00e9es/\u00e9t\u00e9 2024.txt": "caf\u00e9\n".encode(),
        "empty.txt": b"",
        "sub/page.html": b"<p>page</p>",
        "notes.unknownext": b"?",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / ".env").write_bytes(b"SECRET=1")
    (root / ".cache").mkdir()
    (root / ".cache" / "x").write_bytes(b"cached")
    (root / "nothing-here").mkdir()
    return root, files


def test_put_a_folder_then_get_it_back(cli, site, tmp_path):
    root, files = site
    result = cli("put", root, "--tag", "App-Name=site-test")
    printed = lines(result)
    manifest_id = printed[-1]
    ids = dict(reversed(line.split("\t")) for line in printed[:-1])
    assert sorted(ids) == sorted(files)  # every file once, hidden ones skipped
    err = result.stderr.decode()
    assert "skipped 2 hidden entries (.cache, .env)" in err and "--hidden" in err
    assert "1 empty folder(s) not kept" in err
    # The manifest: arweave/paths 0.2.0, sorted paths, index.html as its index.
    manifest = json.loads(cli("get", manifest_id).stdout)
    assert manifest == {"manifest": "arweave/paths", "version": "0.2.0", "index": {"path": "index.html"},
                        "paths": {path: {"id": ids[path]} for path in sorted(files)}}
    assert list(manifest["paths"]) == sorted(files)
    info = json.loads(cli("info", manifest_id).stdout)
    assert info["content_type"] == MANIFEST_CONTENT_TYPE
    assert {"name": "App-Name", "value": "site-test"} in info["tags"]
    assert {"name": "Type", "value": "manifest"} in info["tags"]
    types = {path: json.loads(cli("info", ids[path]).stdout)["content_type"] for path in files}
    assert types["index.html"] == "text/html" and types["css/site.css"] == "text/css"
    assert types["data/table.json"] == "application/json" and types["notes.unknownext"] == "application/octet-stream"
    for path, data in files.items():
        assert cli("get", ids[path]).stdout == data
    # Back to disk: the same tree, byte for byte; an existing empty folder is fine too.
    out = tmp_path / "copy"
    got = cli("get", manifest_id, "-o", out)
    assert tree_of(out) == {**{p: d for p, d in files.items()}, "css": None, "data": None, "donn\u00e9es": None,
                            "sub": None}
    assert f"{len(files)} files, {sum(map(len, files.values()))} bytes written to {out}" in got.stderr.decode()
    empty = tmp_path / "empty-target"
    empty.mkdir()
    cli("get", manifest_id, "-o", empty)
    assert tree_of(empty) == tree_of(out)
    assert not list(tmp_path.glob(".*.partial"))


def test_hidden_entries_on_request_and_index_and_fallback_chosen(cli, site):
    root, files = site
    printed = lines(cli("put", root, "--hidden", "--index", "sub/page.html", "--fallback", "./index.html"))
    paths = {line.split("\t")[1]: line.split("\t")[0] for line in printed[:-1]}
    assert {".env", ".cache/x"} <= set(paths)
    manifest = json.loads(cli("get", printed[-1]).stdout)
    assert manifest["index"] == {"path": "sub/page.html"} and manifest["fallback"] == {"id": paths["index.html"]}


def test_a_folder_without_index_html_has_no_index(cli, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"a")
    manifest = json.loads(cli("get", lines(cli("put", tmp_path / "d"))[-1]).stdout)
    assert "index" not in manifest and list(manifest["paths"]) == ["a.txt"]


@pytest.mark.parametrize("flags, message", [
    (["--index", "nope.html"], "index 'nope.html' is not a file in"),
    (["--fallback", "nope.html"], "fallback 'nope.html' is not a file in"),
    (["--content-type", "text/plain"], "each file of a folder gets its own Content-Type"),
    (["--raw"], "apply to one file"),
    (["--tag", "Content-Type=x/y"], "drop the Content-Type tag"),
])
def test_wrong_folder_options_store_nothing(cli, site, flags, message):
    root, _ = site
    assert message in one_line_error(cli("put", root, *flags, check=False))
    assert count(cli) == 0


def test_folder_options_on_a_file_are_refused(cli, site):
    root, _ = site
    assert "apply to a folder" in one_line_error(cli("put", root / "index.html", "--index", "x", check=False))


def test_links_and_special_files_are_refused_before_anything_is_stored(cli, site, tmp_path):
    root, _ = site
    outside = tmp_path / "outside-secret.txt"
    outside.write_bytes(b"not in the folder")
    os.symlink(outside, root / "data" / "link.txt")
    os.symlink(tmp_path, root / "dir-link")
    os.mkfifo(root / "pipe")
    err = one_line_error(cli("put", root, check=False))
    assert f"{root / 'data' / 'link.txt'} is a symbolic link" in err
    assert f"{root / 'dir-link'} is a symbolic link" in err
    assert f"{root / 'pipe'} is not a regular file" in err
    assert count(cli) == 0  # nothing stored, not even the regular files
    os.symlink(outside, root / ".hidden-link")  # skipped with the other hidden entries: no refusal of its own
    (root / "data" / "link.txt").unlink()
    (root / "dir-link").unlink()
    (root / "pipe").unlink()
    assert cli("put", root).returncode == 0


@pytest.mark.parametrize("name, message", [
    (b"caf\xe9.txt", "not valid UTF-8"),
    (b"back\\slash.txt", "backslash"),
    (b"new\nline.txt", "control character"),
])
def test_odd_names_are_refused_by_name(cli, tmp_path, name, message):
    root = tmp_path / "odd"
    root.mkdir()
    (root / "fine.txt").write_bytes(b"fine")
    with open(os.path.join(os.fsencode(root), name), "wb") as out:
        out.write(b"odd")
    assert message in one_line_error(cli("put", root, check=False))
    assert count(cli) == 0


def test_a_folder_holding_the_data_folder_is_refused(cli, tmp_path):
    (tmp_path / "file.txt").write_bytes(b"x")
    assert "holds the data folder" in one_line_error(cli("put", tmp_path, check=False))
    assert "holds the data folder" in one_line_error(cli("put", cli.data_dir, check=False))
    assert count(cli) == 0


def test_an_empty_folder_is_refused(cli, tmp_path):
    (tmp_path / "void" / "inner").mkdir(parents=True)
    assert "holds no files to store" in one_line_error(cli("put", tmp_path / "void", check=False))


def test_progress_covers_the_whole_folder(cli, tmp_path):
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    root = tmp_path / "big"
    root.mkdir()
    for n in range(3):
        (root / f"part{n}.bin").write_bytes(random.Random(n).randbytes(1024 * 1024))
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    try:
        proc = subprocess.run([cli.script, "--data", str(cli.data_dir), "put", str(root)],
                              stdout=subprocess.PIPE, stderr=terminal, timeout=120, env=cli.env)  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                piece = os.read(controller, 65536)
            except OSError:
                break
            if not piece:
                break
            shown += piece
    finally:
        os.close(controller)
    assert proc.returncode == 0 and len(proc.stdout.decode().split("\n")) == 5  # 3 files + manifest + ""
    assert b"put 3 files" in shown and b"3.00M/3.00M" in shown and b"100%" in shown


# -- get -o DIR of manifests someone else wrote ----------------------------------------------


def put_manifest(cli, paths: dict, **extra) -> str:
    doc = {"manifest": "arweave/paths", "version": "0.2.0", **extra, "paths": paths}
    body = json.dumps(doc).encode()
    return lines(cli("put", "-", "--content-type", MANIFEST_CONTENT_TYPE, input=body))[-1]


@pytest.mark.parametrize("path, message", [
    ("../escape.txt", "'..' part"),
    ("a/../../escape.txt", "'..' part"),
    ("/tmp/escape.txt", "is absolute"),
    ("a//b.txt", "empty part"),
    ("./a.txt", "'.' part"),
    ("dir/", "ends with '/'"),
    ("a\\..\\escape.txt", "backslash"),
    ("bell\u0007.txt", "control character"),
    ("x" * 300, "longer than 255 bytes"),
    ("", "empty path"),
])
def test_unsafe_manifest_paths_are_refused_and_nothing_is_written(cli, tmp_path, path, message):
    good = lines(cli("put", "-", input=b"payload"))[-1]
    manifest_id = put_manifest(cli, {"fine.txt": {"id": good}, path: {"id": good}})
    target = tmp_path / "deep" / "target"
    target.parent.mkdir()
    before = tree_of(tmp_path)
    assert message in one_line_error(cli("get", manifest_id, "-o", target, check=False))
    assert tree_of(tmp_path) == before  # no target, no partial folder, nothing escaped
    assert not (tmp_path / "escape.txt").exists() and not os.path.exists("/tmp/escape.txt")


def test_a_path_that_is_also_a_folder_is_refused(cli, tmp_path):
    good = lines(cli("put", "-", input=b"payload"))[-1]
    manifest_id = put_manifest(cli, {"a": {"id": good}, "a/b.txt": {"id": good}})
    assert "is both a file and the folder of" in one_line_error(cli("get", manifest_id, "-o", tmp_path / "t",
                                                                    check=False))
    assert not (tmp_path / "t").exists()


def test_ids_not_stored_here_are_named_before_anything_is_written(cli, tmp_path):
    good = lines(cli("put", "-", input=b"payload"))[-1]
    manifest_id = put_manifest(cli, {"a.txt": {"id": good}, "b.txt": {"id": "A" * 43}})
    err = one_line_error(cli("get", manifest_id, "-o", tmp_path / "t", check=False))
    assert f"'b.txt': {'A' * 43} is not stored here" in err and not (tmp_path / "t").exists()


def test_targets_that_are_not_new_or_empty_folders_are_refused(cli, tmp_path):
    good = lines(cli("put", "-", input=b"payload"))[-1]
    manifest_id = put_manifest(cli, {"a.txt": {"id": good}})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_bytes(b"mine")
    assert "is not empty" in one_line_error(cli("get", manifest_id, "-o", busy, check=False))
    assert tree_of(busy) == {"keep.txt": b"mine"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "link")
    assert "is a symbolic link" in one_line_error(cli("get", manifest_id, "-o", tmp_path / "link", check=False))
    assert not any(elsewhere.iterdir())
    missing = tmp_path / "no" / "such" / "dir"
    assert f"folder {missing.parent} does not exist" in one_line_error(cli("get", manifest_id, "-o", missing,
                                                                           check=False))


def test_notes_for_an_index_or_fallback_without_a_path(cli, tmp_path):
    good = lines(cli("put", "-", input=b"payload"))[-1]
    other = lines(cli("put", "-", input=b"other"))[-1]
    manifest_id = put_manifest(cli, {"a.txt": {"id": good}}, index={"id": other}, fallback={"id": other})
    got = cli("get", manifest_id, "-o", tmp_path / "t")
    err = got.stderr.decode()
    assert f"index is {other}, which has no path: not written" in err and f"fallback is {other}" in err
    assert tree_of(tmp_path / "t") == {"a.txt": b"payload"}


def test_a_corrupt_chunk_leaves_no_folder_behind(cli, tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "small.txt").write_bytes(b"small")
    (root / "large.bin").write_bytes(random.Random(9).randbytes(5_000_000))
    manifest_id = lines(cli("put", root))[-1]
    segment = next((cli.data_dir / "segments").glob("obj-*.seg"))
    os.chmod(segment, 0o644)
    with open(segment, "r+b") as f:
        f.seek(300_000)
        byte = f.read(1)
        f.seek(300_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = cli("get", manifest_id, "-o", tmp_path / "out", check=False)
    assert result.returncode != 0 and "chunk 1" in result.stderr.decode()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


# -- a real server resolves the folder's paths ------------------------------------------------


def test_serve_resolves_paths_through_the_manifest(cli, site, tmp_path):
    root, files = site
    manifest_id = lines(cli("put", root, "--fallback", "sub/page.html"))[-1]
    server = start_serve(tmp_path / "serve.log", "--data", str(cli.data_dir), env=cli.env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            home = client.get(f"/{manifest_id}/")
            assert home.status_code == 200 and home.content == files["index.html"]
            assert home.headers["content-type"].startswith("text/html")
            css = client.get(f"/{manifest_id}/css/site.css")
            assert css.content == files["css/site.css"] and css.headers["content-type"].startswith("text/css")
            named = client.get(f"/{manifest_id}/" + quote("donn\u00e9es/\u00e9t\u00e9 2024.txt"))
            assert named.status_code == 200 and named.content == files["donn\u00e9es/\u00e9t\u00e9 2024.txt"]
            big = client.get(f"/{manifest_id}/data/big.bin", headers={"Range": "bytes=100-199"})
            assert big.status_code == 206 and big.content == files["data/big.bin"][100:200]
            unknown = client.get(f"/{manifest_id}/no/such/path")
            assert unknown.status_code == 200 and unknown.content == files["sub/page.html"]  # the fallback
    finally:
        assert server.stop() == 0
