"""`fsck --peer` only means something with `--repair`: alone it is refused, not silently ignored."""

from __future__ import annotations

from tests.cli.conftest import isolated_env, run_permastore, seed_wallet


def test_fsck_peer_without_repair_is_a_clear_error(tmp_path, bucket):
    env = isolated_env(tmp_path)
    node = seed_wallet(tmp_path / "node")
    bucket_args = ("--s3-endpoint", bucket.endpoint, "--s3-bucket", bucket.bucket)
    assert run_permastore("--data", node, *bucket_args, "fsck", env=env).returncode == 0
    refused = run_permastore("--data", node, *bucket_args, "fsck", "--peer", "http://127.0.0.1:9", env=env)
    err = refused.stderr.decode()
    assert refused.returncode == 2 and refused.stdout == b""
    assert "--peer" in err and "--repair" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # With --repair the same peer is used (unreachable here: nothing to repair, the check passes).
    repaired = run_permastore("--data", node, *bucket_args, "fsck", "--repair", "--peer", "http://127.0.0.1:9", env=env)
    assert repaired.returncode == 0, repaired.stderr.decode()
