"""Plugin commands get the core's global options and store checks without code of their own.

A real plugin, installed the way plugins are found (a dist-info with a `permastore.commands`
entry point, on PYTHONPATH), declares no --data: it is accepted before and after its
command, nested commands included; `needs_store=READ` makes the core refuse a folder without
a store before the handler runs; a plugin that still declares --data itself keeps working.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import isolated_env, make_store, run_permastore, tree_of

PLUGIN = '''
import argparse


def register(subparsers):
    echo = subparsers.add_parser("echo-data", help="print --data and the ID")
    echo.add_argument("object_id")
    echo.set_defaults(handler=lambda args: print(args.data, args.object_id))

    demo = subparsers.add_parser("demo")
    actions = demo.add_subparsers(dest="demo_command", required=True)
    show = actions.add_parser("show")
    show.set_defaults(handler=show_store, needs_store="read")

    legacy = subparsers.add_parser("legacy")
    legacy.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="its own copy, as serve had")
    legacy.set_defaults(handler=lambda args: print(args.data))

    wrong = subparsers.add_parser("wrong")
    wrong.set_defaults(handler=lambda args: print("ran"), needs_store="maybe")


def show_store(args):
    from permastore.cli.stores import READ, opened_store

    with opened_store(args.data, READ) as store:
        print("objects:", store.fsck().objects_checked)
'''


def installed_plugin(site: Path, module: str, source: str) -> Path:
    """Given a folder, install a plugin module there as pip would (a dist-info with the entry point)."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (site / f"{module}.py").write_text(source)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[permastore.commands]\n{module} = {module}:register\n")
    return site


@pytest.fixture
def plugin_env(tmp_path, home):
    return isolated_env(home, PYTHONPATH=str(installed_plugin(tmp_path / "plugin-site", "demo_plugin", PLUGIN)))


def test_global_options_anywhere_for_a_plugin_that_declares_none(plugin_env, tmp_path, home):
    dash_id = "-" + "A" * 42
    for argv in (["--data", "D1", "echo-data", dash_id], ["echo-data", dash_id, "--data", "D1"],
                 ["echo-data", "--data", "D1", dash_id]):
        result = run_permastore(*argv, env=plugin_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().split() == ["D1", dash_id]
    default = run_permastore("echo-data", "X" * 43, env=plugin_env)
    assert default.stdout.decode().split()[0] == str(home / ".permastore")
    shown = run_permastore("demo", "show", "--help", env=plugin_env).stdout.decode()
    assert len(re.findall(r"--data DIR\s+data folder", shown)) == 1


def test_a_plugins_own_data_option_still_works(plugin_env):
    assert run_permastore("legacy", "--data", "D2", env=plugin_env).stdout.decode().strip() == "D2"
    assert run_permastore("--data", "D3", "legacy", env=plugin_env).stdout.decode().strip() == "D3"


def test_a_plugin_read_command_is_refused_on_a_folder_without_a_store(plugin_env, tmp_path):
    missing = tmp_path / "typo"
    before = tree_of(tmp_path)
    for argv in (["demo", "show", "--data", missing], ["--data", missing, "demo", "show"],
                 ["demo", "--data", missing, "show"]):
        result = run_permastore(*argv, env=plugin_env)
        assert result.returncode == 1 and f"no store at {missing}" in result.stderr.decode()
    assert tree_of(tmp_path) == before
    store = make_store(tmp_path / "real")
    shown = run_permastore("demo", "show", "--data", store, env=plugin_env)
    assert shown.returncode == 0 and shown.stdout.decode().strip() == "objects: 0"


def test_an_unknown_store_need_is_a_clear_error(plugin_env):
    result = run_permastore("wrong", env=plugin_env)
    assert result.returncode == 1 and "needs_store='maybe'" in result.stderr.decode()
    assert result.stdout == b""


SLOW_PLUGIN = '''
import pathlib, os

pathlib.Path(os.environ["PLUGIN_MARK"]).write_text("loaded")


def register(subparsers):
    subparsers.add_parser("slow-thing", help="a plugin command").set_defaults(handler=lambda args: print("slow ran"))
'''


@pytest.fixture
def marking_plugin_env(tmp_path, home):
    site = installed_plugin(tmp_path / "marking-site", "marking_plugin", SLOW_PLUGIN)
    return isolated_env(home, PYTHONPATH=str(site), PLUGIN_MARK=str(tmp_path / "mark"))


def test_core_commands_run_without_importing_the_plugins(marking_plugin_env, tmp_path):
    mark = tmp_path / "mark"
    store = make_store(tmp_path / "s")
    # Global options before the command, with values that look like commands, are skipped.
    for argv in (["--data", store, "info", "A" * 43], ["--data", "slow-thing", "init"], ["put", "--help"]):
        run_permastore(*argv, env=marking_plugin_env, cwd=tmp_path)
        assert not mark.exists(), argv
    assert (tmp_path / "slow-thing" / "wallet.json").exists()  # that init ran, on the folder named like a command
    for words in (["--help"], ["-h", "put"]):
        listing = run_permastore(*words, env=marking_plugin_env)
        assert mark.exists() and "slow-thing" in listing.stdout.decode(), words
        mark.unlink()
    ran = run_permastore("--data", store, "slow-thing", env=marking_plugin_env)
    assert ran.returncode == 0 and ran.stdout.decode().strip() == "slow ran" and mark.exists()
    mark.unlink()
    typo = run_permastore("slow-thin", env=marking_plugin_env)  # the error lists every command
    assert typo.returncode == 2 and "slow-thing" in typo.stderr.decode()
