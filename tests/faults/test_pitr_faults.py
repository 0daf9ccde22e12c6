"""A point-in-time restore (pgBackRest) interrupted with Ctrl-C while the scratch server replays
WAL: the live Postgres container never stopped, runs on its own volume, still holds every row;
the scratch container and the new volume are gone; the lock is free."""

from __future__ import annotations

import signal

from ops import accessory
from ops.audit import utcnow
from ops.backup import physical
from ops.backup.timeparse import format_utc
from ops.remote import Gateway
from ops.sandbox import services
from tests.faults import helpers as h


def _containers(gw: Gateway, env) -> str:
    host = env.hosts[env.accessories["postgres"].host]
    return gw.run(host, ("docker", "ps", "-a", "--format", "{{.Names}}")).stdout


def _volumes(gw: Gateway, env) -> str:
    host = env.hosts[env.accessories["postgres"].host]
    return gw.run(host, ("docker", "volume", "ls", "--format", "{{.Name}}")).stdout


def test_ctrl_c_during_replay_leaves_the_live_server_serving_and_removes_the_scratch(sandbox_env, marker_rows):
    env = sandbox_env
    acc = env.accessories["postgres"]
    services.ensure_bucket(env)     # the in-memory S3 may have been restarted by another fault test
    with Gateway(env) as gw:
        accessory.boot(gw, "postgres", lock_wait=180)
        if not physical.read_catalog(gw, env).in_repo(1):
            h.run_inv("backup.db", "--host", "sandbox", "--physical", "--lock-wait", "180", timeout=600)
        name = accessory.container_name(env, acc)
        started = accessory.inspect(gw, env.hosts[acc.host], name).started_at
        volume = accessory.current_volume(gw, env, acc)
        volumes = set(_volumes(gw, env).split())

    run = h.Running("restore", "--host", "sandbox", "--at", format_utc(utcnow().replace(microsecond=0)),
                    "--physical", "--yes", "--lock-wait", "180")
    try:
        run.wait_for(r"pgbackrest restore of ", timeout=400)
        run.signal(signal.SIGINT)
        out = run.finish()
    finally:
        run.kill()
    h.assert_interrupted_cleanly(out)
    assert "was not touched and still serves" in out.output, str(out)

    with Gateway(env) as gw:
        info = accessory.inspect(gw, env.hosts[acc.host], name)
        assert info.state == "running" and info.started_at == started, "the live server was never stopped"
        assert accessory.current_volume(gw, env, acc) == volume
        assert "-pitr-" not in _containers(gw, env)
        assert set(_volumes(gw, env).split()) == volumes, "the new volume was removed"
    h.assert_rows_still_there(env, marker_rows)
    h.assert_lock_free()
