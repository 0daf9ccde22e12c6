"""ops/lock.py scopes: the exact take-the-lock commands, run by a real /bin/sh against a temp dir (as on a
host): a backup never blocks a deploy, a restore excludes backups and backups exclude a restore."""

from __future__ import annotations

import dataclasses
import subprocess
from types import SimpleNamespace

import pytest

from ops import lock
from ops.inventory import load_environment
from ops.lock import Holder


@pytest.fixture
def gw(tmp_path):
    env = dataclasses.replace(load_environment("sandbox"), app_dir=str(tmp_path / "app"))
    return SimpleNamespace(env=env)


def take(gw, action: str, scope: str) -> int:
    """Run the command a host would run to take the lock; its exit status (0 taken, 1 held, 3 forbidden)."""
    cmd = lock._take_command(gw, Holder(action, scope=scope))
    return subprocess.run(["sh", "-c", str(cmd)], check=False).returncode


def test_a_backup_and_a_deploy_hold_their_locks_side_by_side(gw):
    assert take(gw, "backup.db", "backup") == 0
    assert take(gw, "deploy", "environment") == 0  # the backup does not hold up a deploy
    assert take(gw, "backup.uploads", "backup") != 0  # one backup at a time


def test_a_restore_is_refused_while_a_backup_holds_its_lock_and_leaves_nothing_behind(gw):
    assert take(gw, "backup.db", "backup") == 0
    assert take(gw, "restore", "exclusive") == 3
    assert _dirs(gw) == {gw.env.app_dir + "/lock-backup"}  # backed out: the main lock stays free


def test_a_backup_is_refused_while_a_restore_runs_but_not_while_a_deploy_does(gw):
    assert take(gw, "deploy", "environment") == 0
    assert take(gw, "backup.db", "backup") == 0
    subprocess.run(["rm", "-rf", gw.env.app_dir + "/lock", gw.env.app_dir + "/lock-backup"], check=True)
    assert take(gw, "restore", "exclusive") == 0
    assert take(gw, "backup.db", "backup") == 3
    assert take(gw, "deploy", "environment") == 1  # a restore excludes everything


def test_an_older_tools_restore_without_a_scope_still_keeps_backups_out(gw):
    main = gw.env.app_dir + "/lock"
    subprocess.run(["mkdir", "-p", main], check=True)
    with open(main + "/holder.json", "w") as fh:
        fh.write('{"action": "restore", "actor": "old@tool", "token": "x"}')
    assert take(gw, "backup.db", "backup") == 3


def test_the_holder_records_its_scope_and_an_old_holder_reads_as_the_environment_scope():
    assert Holder.from_json(Holder("restore", scope="exclusive").json()).scope == "exclusive"
    assert Holder.from_json('{"action": "deploy", "token": "t"}').scope == "environment"
    with pytest.raises(ValueError):
        lock.lock_dir(SimpleNamespace(env=load_environment("sandbox")), "everything")


def _dirs(gw) -> set[str]:
    out = subprocess.run(["sh", "-c", f"ls -d {gw.env.app_dir}/* 2>/dev/null"], capture_output=True, text=True)
    return set(out.stdout.split())
