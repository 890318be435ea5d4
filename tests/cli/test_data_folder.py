"""Issue 10 points 1, 2, 3 and the CLI parts of 12, through the real `permastore` command.

One data folder whatever the current folder ($PERMASTORE_DATA, else ~/.permastore, --data
over both), for the commands and `serve`; reading commands on a folder without a store fail
with "no store at DIR" and create nothing; --data before or after any subcommand; init and
address; query with no filter lists everything, newest first, in pages; get -o into a
missing folder names the folder.
"""

from __future__ import annotations

import json

import httpx
import pytest

from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag

from .conftest import isolated_env, run_permastore, seed_wallet, start_serve, tree_of

ED = Ed25519Signer(bytes(range(32)))


def last_line(result) -> str:
    return result.stdout.decode().strip().splitlines()[-1]


def one_line_error(result) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def dirs(tmp_path):
    """A HOME with a pre-seeded wallet in ~/.permastore (no store yet), and two unrelated working folders."""
    home = tmp_path / "home"
    seed_wallet(home / ".permastore")
    work_a, work_b = tmp_path / "files", tmp_path / "elsewhere"
    work_a.mkdir()
    work_b.mkdir()
    return home, work_a, work_b


def test_put_from_any_folder_goes_to_the_home_store_and_serve_answers_for_it(dirs, tmp_path):
    home, work_a, work_b = dirs
    env = isolated_env(home)
    (work_a / "notes.txt").write_text("my notes\n")
    object_id = last_line(run_permastore("put", "notes.txt", env=env, cwd=work_a))
    assert not (work_a / "data").exists()  # before: a new ./data with a new wallet, here
    assert (home / ".permastore" / "index.sqlite").is_file()
    assert run_permastore("get", object_id, env=env, cwd=work_b).stdout == b"my notes\n"
    server = start_serve(tmp_path / "serve.log", env=env, cwd=work_b)  # the issue: 404 from the other ./data
    try:
        response = httpx.get(f"{server.url}/{object_id}", timeout=30)
        assert response.status_code == 200 and response.content == b"my notes\n"
        # A command alongside the running server writes to the same folder, and the server sees it.
        (work_b / "more.txt").write_text("more\n")
        second = last_line(run_permastore("put", "more.txt", env=env, cwd=work_b))
        assert httpx.get(f"{server.url}/{second}", timeout=30).content == b"more\n"
    finally:
        assert server.stop() == 0


def test_a_fresh_home_gets_its_store_and_wallet_on_the_first_write(tmp_path):
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = isolated_env(home)
    result = run_permastore("put", "-", env=env, cwd=tmp_path, input=b"first")
    assert result.returncode == 0, result.stderr
    wallet = home / ".permastore" / "wallet.json"
    assert wallet.is_file() and wallet.stat().st_mode & 0o777 == 0o600
    owner = json.loads(run_permastore("info", last_line(result), env=env).stdout)["owner_address"]
    assert last_line(run_permastore("address", env=env)) == owner


def test_permastore_data_and_data_option_pick_the_folder(dirs, tmp_path):
    home, work_a, _ = dirs
    chosen = seed_wallet(tmp_path / "chosen")
    other = seed_wallet(tmp_path / "other")
    env = isolated_env(home, PERMASTORE_DATA=str(chosen))
    in_env = last_line(run_permastore("put", "-", env=env, cwd=work_a, input=b"env"))
    assert (chosen / "index.sqlite").is_file() and not (home / ".permastore" / "index.sqlite").exists()
    by_option = last_line(run_permastore("put", "-", "--data", other, env=env, cwd=work_a, input=b"option"))
    assert run_permastore("query", env=env).stdout.decode().split() == [in_env]
    assert run_permastore("--data", other, "query", env=env).stdout.decode().split() == [by_option]


READING_COMMANDS = [
    ["get", "A" * 43],
    ["get", "A" * 43, "-o", "OUT"],
    ["info", "A" * 43],
    ["query"],
    ["query", "--tag", "App=x"],
    ["fsck"],
    ["address"],
]


# address needs only the wallet: a wallet-only folder has an address (test_address_needs_only_the_wallet).
CASES = [(args, folder) for args in READING_COMMANDS for folder in ("missing", "empty", "wallet-only")
         if not (args == ["address"] and folder == "wallet-only")]


@pytest.mark.parametrize("args, folder", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_reading_commands_on_a_folder_without_a_store_fail_and_create_nothing(tmp_path, home, args, folder):
    data = tmp_path / "typo"
    if folder != "missing":
        data.mkdir()
    if folder == "wallet-only":
        seed_wallet(data)
    before = tree_of(tmp_path)
    args = [str(tmp_path / "out.bin") if a == "OUT" else a for a in args]
    for argv in (["--data", data, *args], [*args, "--data", data]):  # before or after the subcommand
        err = one_line_error(run_permastore(*argv, env=isolated_env(home)))
        assert f"no store at {data}" in err
    assert tree_of(tmp_path) == before  # not even an empty folder or a lock file


def test_the_issues_example_typo_fsck_is_no_all_clear(tmp_path, home):
    result = run_permastore("--data", tmp_path / "typo", "fsck", env=isolated_env(home))
    assert "no store at" in one_line_error(result) and "ok" not in result.stdout.decode()
    assert not (tmp_path / "typo").exists()


def test_the_default_folder_is_no_exception(tmp_path, home):
    env = isolated_env(home)
    err = one_line_error(run_permastore("fsck", env=env, cwd=tmp_path))
    assert f"no store at {home / '.permastore'}" in err
    assert not (home / ".permastore").exists() and not (tmp_path / "data").exists()


def test_init_creates_the_store_and_address_reads_it(tmp_path, home):
    env = isolated_env(home)
    data = tmp_path / "node"
    made = run_permastore("init", "--data", data, env=env)
    assert made.returncode == 0 and f"new store at {data}" in made.stderr.decode()
    address = last_line(made)
    assert len(address) == 43 and (data / "index.sqlite").is_file()
    assert last_line(run_permastore("address", "--data", data, env=env)) == address
    again = run_permastore("--data", data, "init", env=env)
    assert last_line(again) == address and "store already at" in again.stderr.decode()
    assert run_permastore("--data", data, "fsck", env=env).stdout.decode().startswith("ok: 0 objects")


def test_address_needs_only_the_wallet(tmp_path, home):
    data = seed_wallet(tmp_path / "wallet-only")
    before = tree_of(tmp_path)
    shown = last_line(run_permastore("address", "--data", data, env=isolated_env(home)))
    assert shown == "fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw"  # the fixture keyfile's address
    assert tree_of(tmp_path) == before
    (data / "wallet.json").write_text("{not json")
    assert "cannot read node wallet" in one_line_error(run_permastore("address", "--data", data,
                                                                       env=isolated_env(home)))


@pytest.mark.parametrize("args", [
    ["put", "FILE"], ["get", "ID"], ["info", "ID"], ["query"], ["fsck"], ["address"], ["init"],
], ids=lambda a: a[0])
def test_data_after_every_core_subcommand(cli, tmp_path, args):
    source = tmp_path / "f.txt"
    source.write_text("after")
    object_id = last_line(cli("put", source))
    argv = [str(source) if a == "FILE" else object_id if a == "ID" else a for a in args]
    result = run_permastore(*argv, "--data", cli.data_dir, env=cli.env)
    assert result.returncode == 0, result.stderr  # before: "unrecognized arguments: --data"
    assert not (cli.home / ".permastore").exists()


PLUGIN_COMMANDS = [["serve"], ["run"], ["replay"], ["model", "add"], ["model", "list"], ["keys", "create"]]


@pytest.mark.parametrize("command", PLUGIN_COMMANDS, ids=" ".join)
def test_every_plugin_command_lists_data(home, command):
    shown = run_permastore(*command, "--help", env=isolated_env(home))
    assert shown.returncode == 0 and "--data DIR" in shown.stdout.decode()


def dash_item() -> bytes:
    """Return a signed ANS-104 item whose ID starts with '-' (one in 64 does)."""
    for n in range(10_000):
        item = ans104.build_item(ED, b"dash", [Tag(b"N", str(n).encode())])
        if ans104.parse_header(item).id.startswith("-"):
            return item
    raise AssertionError("no ID starting with '-' in 10,000 tries")


def test_ids_starting_with_a_dash_work_everywhere(cli, tmp_path):
    item_path = tmp_path / "dash.item"
    item_path.write_bytes(dash_item())
    object_id = last_line(cli("put", "--raw", item_path))
    assert object_id.startswith("-")
    assert cli("get", object_id).stdout == b"dash"
    assert json.loads(cli("info", object_id).stdout)["id"] == object_id
    out = tmp_path / "out.bin"
    cli("get", object_id, "-o", out)
    assert out.read_bytes() == b"dash"
    assert object_id in cli("query").stdout.decode().split()
    # An unknown dash ID is an ID that is not found, not an unknown option.
    missing = "-" + "Q" * 42
    assert f"{missing} not found" in one_line_error(cli("info", missing, check=False))
    # Negative numbers are still numbers.
    assert "must not be negative" in one_line_error(cli("query", "--limit", "-3", check=False))


def test_query_with_no_filter_lists_everything_newest_first_in_pages(cli):
    ids = [last_line(cli("put", "-", "--tag", f"N={n}", input=f"object {n}".encode())) for n in range(7)]
    assert cli("query").stdout.decode().split() == ids[::-1]
    assert cli("query", "--oldest-first").stdout.decode().split() == ids
    seen, after, pages = [], [], 0
    while True:
        page = cli("query", "--limit", "3", *after)
        seen += page.stdout.decode().split()
        pages += 1
        more = page.stderr.decode().strip()
        if not more:
            break
        assert more.startswith("more: --after ")
        after = ["--after", more.split()[-1]]
    assert seen == ids[::-1] and pages == 3  # 3 + 3 + 1
    long = cli("query", "--long", "--limit", "1").stdout.decode().strip().split("\t")
    assert long == [ids[-1], str(len("object 6")), "-", "pending"]
    cli("query")  # a listing that ends says nothing more
    assert cli("query").stderr == b""


def test_get_into_a_missing_folder_names_the_folder(cli, tmp_path):
    object_id = last_line(cli("put", "-", input=b"x"))
    target = tmp_path / "missing" / "dir" / "x"
    err = one_line_error(cli("get", object_id, "-o", target, check=False))
    assert f"folder {target.parent} does not exist" in err and "partial" not in err
    folder = tmp_path / "out"
    folder.mkdir()
    assert f"{folder} is a folder" in one_line_error(cli("get", object_id, "-o", folder, check=False))
    assert not list(tmp_path.rglob("*.partial")) and not any(folder.iterdir())


def test_serve_creates_a_store_on_a_new_folder(tmp_path, home):
    data = tmp_path / "new-node"
    server = start_serve(tmp_path / "serve.log", "--data", str(data), env=isolated_env(home))
    try:
        assert (data / "index.sqlite").is_file() and (data / "wallet.json").is_file()
    finally:
        assert server.stop() == 0
    assert run_permastore("fsck", "--data", data, env=isolated_env(home)).returncode == 0
