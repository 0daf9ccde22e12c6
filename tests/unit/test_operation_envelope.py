"""The lock and the operation envelope, run for real: each "host" is a directory on this machine
and every command the lock sends is executed by a local shell, exactly as sshd would run it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ops import lock
from ops.commands import render
from ops.errors import HostUnreachable, OpsError
from ops.inventory import load_environment
from ops.masking import Masker
from ops.operation import Operation, Plan
from ops.remote import Gateway, HostResults, RunResult


class LocalHosts:
    """A Gateway stand-in: host ``name``'s app_dir is ``root/name``; commands run in a local shell."""

    def __init__(self, root: Path, *, down: set[str] | None = None):
        base = load_environment("sandbox")
        self.root = root
        self.env = replace(base, s3=None, app_dir=str(root / "APP"))
        self.hosts = list(self.env.hosts.values())
        self.down = down or set()
        self.dry_run = False
        self.mask = Masker()
        self.ran: list[tuple[str, str]] = []

    def run(self, host, command, *, mutating=True, check=True, timeout=None, stdin=None):
        if host.name in self.down:
            raise HostUnreachable("cannot reach it: Connection refused", host=host.name)
        text = render(command).replace(str(self.root / "APP"), str(self.root / host.name))
        self.ran.append((host.name, text))
        (self.root / host.name).mkdir(exist_ok=True)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30)
        res = RunResult(host.name, text, proc.stdout, proc.stderr, proc.returncode)
        if check and not res.ok:
            raise OpsError(f"exit {res.exit_code}: {text}", host=host.name)
        return res

    def query(self, host, command, **kw):
        return self.run(host, command, mutating=False, **kw)

    map = Gateway.map
    parallel = 4

    def lock_dir(self, name: str) -> Path:
        return self.root / name / "lock"


@pytest.fixture
def fleet(tmp_path):
    return LocalHosts(tmp_path)


def test_lock_is_taken_on_every_host_with_holder_and_heartbeat(fleet):
    with lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy", "v1"), heartbeat=0):
        for h in fleet.hosts:
            holder = json.loads((fleet.lock_dir(h.name) / "holder.json").read_text())
            assert holder["action"] == "deploy" and holder["pid"] == os.getpid() and holder["machine"]
            assert (fleet.lock_dir(h.name) / "heartbeat").exists()
    assert not any(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def test_a_failure_on_a_later_host_releases_the_hosts_already_locked(fleet):
    fleet.down = {"web2"}  # db1 then web1 are taken first (name order), web2 fails
    with pytest.raises(HostUnreachable):
        lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0).acquire()
    assert not fleet.lock_dir("db1").exists() and not fleet.lock_dir("web1").exists()


def test_ctrl_c_while_waiting_for_the_lock_releases_what_was_taken(fleet, monkeypatch):
    other = lock.EnvironmentLock(fleet, [fleet.hosts[-1]], lock.Holder("backup.db"), heartbeat=0)
    other.acquire()
    mine = lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), wait=30, heartbeat=0)

    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(lock.time, "sleep", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mine.acquire()
    taken_by_me = [h.name for h in fleet.hosts if h.name != fleet.hosts[-1].name]
    assert not any(fleet.lock_dir(n).exists() for n in taken_by_me)
    assert fleet.lock_dir(fleet.hosts[-1].name).exists()  # the other operation's lock stays


def test_a_held_lock_names_the_holder_and_how_to_wait(fleet):
    with lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("restore", "b1", actor="alice@laptop"), heartbeat=0):
        with pytest.raises(lock.LockHeld) as err:
            lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0).acquire()
    assert "alice@laptop" in str(err.value) and "--lock-wait" in str(err.value)


def test_a_lock_whose_process_died_on_this_machine_is_reported_stale_with_the_command(fleet):
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = lock.Holder("deploy", "v9", pid=dead.pid)
    taken = lock.EnvironmentLock(fleet, fleet.hosts, holder, heartbeat=0)
    taken.acquire()
    states = lock.survey(fleet, fleet.hosts).ok
    assert all(s.stale and str(dead.pid) in s.why for s in states.values())
    with pytest.raises(lock.LockHeld) as err:
        lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0).acquire()
    assert "STALE" in str(err.value) and "inv lock.release --host sandbox" in str(err.value)


def test_a_lock_without_heartbeat_for_long_is_stale_even_from_another_machine():
    holder = lock.Holder("deploy", machine="other-laptop", pid=1234)
    assert lock.judge(holder, 5.0, here="ops-box").stale is False
    old = lock.judge(holder, lock.STALE_AFTER_SECONDS + 1, here="ops-box")
    assert old.stale and "no heartbeat" in old.why


def test_the_heartbeat_keeps_touching_only_our_own_lock(fleet):
    taken = lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0.05)
    taken.acquire()
    try:
        import time

        time.sleep(0.3)
        beats = [t for h, t in fleet.ran if "touch" in t and "grep -q" in t]
        assert beats and all(taken.holder.token in t for t in beats)
    finally:
        taken.release()


def test_release_never_removes_a_lock_taken_by_someone_else_since(fleet):
    mine = lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0)
    mine.acquire()
    shown = lock.survey(fleet, fleet.hosts).ok
    # force-release + a new operation takes the lock in between
    for h in fleet.hosts:
        (fleet.lock_dir(h.name) / "holder.json").write_text(lock.Holder("restore").json())
    mine.release()
    assert all(fleet.lock_dir(h.name).exists() for h in fleet.hosts)
    outcome = lock.release_shown(fleet, fleet.hosts, shown)
    assert set(outcome.ok.values()) == {"changed"}
    assert all(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def test_release_shown_removes_exactly_the_lock_that_was_shown(fleet):
    lock.EnvironmentLock(fleet, fleet.hosts, lock.Holder("deploy"), heartbeat=0).acquire()
    shown = lock.survey(fleet, fleet.hosts).ok
    assert set(lock.release_shown(fleet, fleet.hosts, shown).ok.values()) == {"released"}
    assert not any(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def _audit_lines(fleet, name="web1"):
    path = fleet.root / name / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_operation_audits_started_and_ok_once_and_frees_the_lock(fleet):
    with Operation(fleet, "deploy", fleet.hosts, version="v2", detail="release r1") as op:
        assert all(fleet.lock_dir(h.name).exists() for h in fleet.hosts)
        op.outcome = "release r1 serving"
    outcomes = [(e["action"], e["outcome"], e["detail"]) for e in _audit_lines(fleet)]
    assert outcomes == [("deploy", "started", "release r1"), ("deploy", "ok", "release r1 serving")]
    assert not any(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def test_operation_failure_is_audited_and_the_lock_released(fleet):
    with pytest.raises(OpsError, match="health check failed"):
        with Operation(fleet, "rollback", fleet.hosts):
            raise OpsError("health check failed on web2")
    assert [e["outcome"] for e in _audit_lines(fleet)] == ["started", "failed"]
    assert "health check failed" in _audit_lines(fleet)[-1]["detail"]
    assert not any(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def test_a_release_failure_is_added_to_the_real_error_not_put_in_its_place(fleet):
    with pytest.raises(OpsError) as err:
        with Operation(fleet, "deploy", fleet.hosts):
            fleet.down = {"web2"}
            raise OpsError("switch failed on web1")
    text = str(err.value)
    assert text.startswith("switch failed on web1")
    assert "also:" in text and "web2" in text and "inv lock.release --host sandbox" in text


def test_a_release_failure_after_success_becomes_a_warning(fleet):
    with Operation(fleet, "deploy", fleet.hosts) as op:
        fleet.down = {"db1"}
    assert any("db1" in w for w in op.warnings)


def test_ctrl_c_inside_an_operation_is_audited_as_interrupted(fleet):
    with pytest.raises(KeyboardInterrupt):
        with Operation(fleet, "restore", fleet.hosts):
            raise KeyboardInterrupt
    assert _audit_lines(fleet)[-1]["detail"] == "interrupted (Ctrl-C)"
    assert not any(fleet.lock_dir(h.name).exists() for h in fleet.hosts)


def test_plan_render_says_what_would_happen_per_host():
    plan = Plan("deploy", "prod", "deploy abc to web1, web2", lines=["pull x"],
                steps={"web1": ["v1 -> abc"], "web2": ["v1 -> abc"]}, warnings=["web3 excluded"])
    text = "\n".join(plan.render())
    assert text.startswith("plan: deploy abc") and "web2:\n    1. v1 -> abc" in text and "warning: web3" in text


def test_host_results_type_is_what_survey_returns(fleet):
    assert isinstance(lock.survey(fleet, fleet.hosts), HostResults)


def test_ctrl_c_during_a_fleet_step_lets_running_hosts_finish_and_starts_no_new_one():
    import os
    import signal
    import threading
    import time

    env = load_environment("sandbox")
    echoed: list[str] = []
    gw = Gateway(env, parallel=2, echo=echoed.append)
    started, finished = [], []

    def step(host):
        started.append(host.name)
        time.sleep(0.6)
        finished.append(host.name)

    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        gw.map(step, list(env.hosts.values()))
    assert len(started) == 2 and sorted(finished) == sorted(started)  # the third never began
    assert any("finish the current step" in line for line in echoed)
