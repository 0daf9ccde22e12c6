"""The second copy (``s3.copy``) unreachable: the backup itself is good (kept, exit 0, a clear warning),
``backup.check`` fails (exit 1, the metric says unreachable, then what the copy lacks) until
``backup.copy`` catches up; then everything is in step again.

Driven through the real CLI on a throwaway copy of the sandbox inventory (its own environment name,
so its backups are its own), whose ``s3.copy`` first points at a port where nothing listens.
"""

from __future__ import annotations

import dataclasses
import json
import socket

import yaml

from ops import s3
from ops.inventory import INVENTORY_DIR, load_environment
from tests.faults import helpers as h


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _point_copy_at(name: str, endpoint: str) -> None:
    path = INVENTORY_DIR / f"{name}.yml"
    raw = yaml.safe_load(path.read_text())
    raw["s3"]["copy"]["endpoint_url"] = endpoint
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _remove_backups_of(name: str) -> None:
    env = load_environment(name)
    prefix = f"{env.s3.prefix}backups/{name}/"
    for target in (env.s3, env.s3.copy):
        client = s3.client(dataclasses.replace(env, s3=target))
        for obj in client.list_objects_v2(Bucket=target.bucket, Prefix=prefix).get("Contents", []):
            client.delete_object(Bucket=target.bucket, Key=obj["Key"])


def test_an_unreachable_copy_keeps_the_backup_flags_the_divergence_and_backup_copy_catches_up(fleet, sandbox_env, tmp_path):
    # `fleet`: Postgres booted and the app deployed (on a fresh fleet this test runs first)
    env = sandbox_env
    real = env.s3.copy.endpoint_url
    copy = {"bucket": env.s3.copy.bucket, "region": env.s3.copy.region, "path_style": True,
            "endpoint_url": f"http://127.0.0.1:{_dead_port()}"}
    with h.inventory_copy(env, s3={"copy": copy}) as name:
        try:
            out = h.run_inv("backup.db", "--host", name, "--logical", "--lock-wait", "180", "--json", timeout=600)
            assert out.code == 0, str(out)
            data = json.loads(out.stdout)["data"]
            assert data["copy"] == "failed" and "Traceback" not in out.output
            assert f"second copy of {data['id']} to s3://{copy['bucket']} failed" in out.stderr
            assert f"inv backup.copy --host {name}" in out.stderr

            prom = tmp_path / "copy.prom"
            out = h.run_inv("backup.check", "--host", name, "--max-age", "1h", "--prometheus-file", str(prom))
            assert out.code == 1 and "could not be listed" in out.output, str(out)
            assert f'ops_backup_copy_reachable{{env="{name}"}} 0' in prom.read_text()

            _point_copy_at(name, real)  # the copy target is back
            out = h.run_inv("backup.check", "--host", name, "--max-age", "1h")
            assert out.code == 1 and f"db backup {data['id']} missing from the copy" in out.output, str(out)

            out = h.run_inv("backup.copy", "--host", name, "--lock-wait", "180")
            assert out.code == 0 and "copied 1 backup(s)" in out.stdout, str(out)
            out = h.run_inv("backup.check", "--host", name, "--max-age", "1h", "--prometheus-file", str(prom))
            assert out.code == 0 and f"{name} copy: ok" in out.stdout, str(out)
            assert f'ops_backup_copy_diverging{{env="{name}",kind="db"}} 0' in prom.read_text()
            listed = json.loads(h.run_inv("backup.list", "--host", name, "--kind", "db", "--json").stdout)["data"]
            # NOTE: with pitr the physical backups and the WAL range follow (no "where": pgBackRest's own copies).
            assert [(row["id"], row["where"]) for row in listed if "data_key" in row] == [(data["id"], "both")]
            # RUNBOOK: a restore read from the copy on purpose (the plan only: nothing changes)
            out = h.run_inv("restore", "--host", name, "--id", data["id"], "--from", "copy", "--dry-run")
            assert out.code == 0 and "from the SECOND COPY" in out.stdout and "nothing was changed" in out.stdout, \
                str(out)
        finally:
            _point_copy_at(name, real)
            _remove_backups_of(name)
    h.assert_lock_free()
