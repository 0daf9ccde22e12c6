"""ops/restore/kept.py: which names count as a database a restore kept, and the put-back plan's wording."""

from __future__ import annotations

import json

import pytest

from ops.backup.context import BackupContext
from ops.errors import ConfigError
from ops.inventory import Host, load_environment
from ops.postgres import PgTarget
from ops.restore.errors import RestoreRefused
from ops.restore.kept import (
    KeptDatabase,
    KeptServer,
    choose,
    drop_kept_servers,
    kept_pattern,
    kept_server_pattern,
    list_kept_servers,
)

TARGET = PgTarget(host=Host("db1", "127.0.0.1", roles=("db",)), container="athlete-platform-postgres",
                  user="athlete", dbname="athlete", password="x" * 16)


def test_only_names_a_restore_gives_are_kept_databases():
    pattern = kept_pattern("athlete")
    assert pattern.fullmatch("athlete_before_20261124_030000")
    for name in ("athlete", "postgres", "athlete_before_", "athlete_failed_20261124_030000",
                 "athlete_before_20261124_030000; DROP DATABASE athlete", "other_before_20261124_030000"):
        assert not pattern.fullmatch(name), name


def test_choosing_refuses_other_databases_and_names_what_is_kept():
    kept = [KeptDatabase("athlete_before_20261124_030000", 10, 0)]
    assert choose(kept, TARGET, "athlete_before_20261124_030000") is kept[0]
    with pytest.raises(ConfigError, match="'postgres' is not a database a restore kept"):
        choose(kept, TARGET, "postgres")
    with pytest.raises(RestoreRefused, match=r"no database athlete_before_20261125_000000 on db1 \(kept: "
                                             r"athlete_before_20261124_030000\)"):
        choose(kept, TARGET, "athlete_before_20261125_000000")


# -- servers a point-in-time restore kept --------------------------------------------------

class _Res:
    def __init__(self, stdout: str):
        self.stdout, self.ok = stdout, True


class FakeDbHost:
    """Answers the two docker queries list_kept_servers makes; records every run."""

    def __init__(self, containers: dict[str, dict], live_volume: str):
        self.containers, self.live_volume, self.ran = containers, live_volume, []

    def query(self, host, argv, check=True):
        argv = list(argv)
        if argv[:2] == ["docker", "ps"]:
            return _Res("\n".join([*self.containers, "athlete-platform-postgres", "athlete-platform-postgres-pitr-x"]))
        if argv[:3] == ["docker", "container", "inspect"]:
            return _Res(json.dumps([self.containers[argv[-1]]]))
        if argv[0] == "cat":
            return _Res(self.live_volume)
        raise AssertionError(argv)

    def run(self, host, argv, **_):
        self.ran.append(list(argv))
        raise AssertionError(f"nothing may run here: {argv}")


def _server(volume: str, state: str = "exited") -> dict:
    return {"State": {"Status": state}, "Created": "2026-11-29T22:00:01.123Z",
            "Mounts": [{"Type": "bind", "Destination": "/etc/pgbackrest/ca", "Name": ""},
                       {"Type": "volume", "Destination": "/var/lib/postgresql/data", "Name": volume}]}


@pytest.fixture
def env():
    return load_environment("sandbox")


def test_kept_servers_are_the_accessorys_before_containers_with_the_volume_at_its_data_path(env):
    gw = FakeDbHost({"athlete-platform-postgres-before-20261129220000": _server("athlete-platform-postgres-data")},
                    live_volume="athlete-platform-postgres-data-20261129220000")
    assert list_kept_servers(gw, env) == [KeptServer("athlete-platform-postgres-before-20261129220000",
                                                     "athlete-platform-postgres-data", "exited", "2026-11-29 22:00:01")]
    pattern = kept_server_pattern("athlete-platform-postgres")
    for name in ("athlete-platform-postgres", "athlete-platform-postgres-pitr-20261129220000",
                 "athlete-platform-postgres-before-2026", "other-postgres-before-20261129220000"):
        assert not pattern.fullmatch(name), name


@pytest.mark.parametrize("state, volume, refusal", [
    ("running", "athlete-platform-postgres-data", "is running: stop it first"),
    ("exited", "athlete-platform-postgres-data-20261129220000", "the live server's volume: not removed"),
])
def test_a_running_kept_server_or_one_on_the_live_volume_is_never_removed(env, state, volume, refusal):
    name = "athlete-platform-postgres-before-20261129220000"
    gw = FakeDbHost({name: _server(volume, state)}, live_volume="athlete-platform-postgres-data-20261129220000")
    with pytest.raises(RestoreRefused, match=refusal):
        drop_kept_servers(BackupContext(env), gw, [name])
    with pytest.raises(ConfigError, match="is not a server a restore kept on db1"):
        drop_kept_servers(BackupContext(env), gw, ["athlete-platform-postgres"])
    assert gw.ran == []
