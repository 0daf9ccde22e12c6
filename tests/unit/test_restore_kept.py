"""ops/restore/kept.py: which names count as a database a restore kept, and the put-back plan's wording."""

from __future__ import annotations

import pytest

from ops.errors import ConfigError
from ops.inventory import Host
from ops.postgres import PgTarget
from ops.restore.errors import RestoreRefused
from ops.restore.kept import KeptDatabase, choose, kept_pattern

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
