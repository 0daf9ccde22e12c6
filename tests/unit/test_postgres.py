"""ops/postgres.py: every connection is bounded (connect timeout, TCP keepalives, statement timeout)."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest

from ops import postgres
from ops.errors import ConfigError
from ops.inventory import Host
from ops.postgres import DatabaseURL, PgTarget
from ops.restore import database

HOST = Host("db1", "127.0.0.1", roles=("db",))
URL = DatabaseURL("athlete", "pw-0123456789abcdef", "172.31.250.21", 5432, "athlete")
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3}


class FakeGateway:
    def __init__(self):
        self.forwards = []

    @contextlib.contextmanager
    def forward_local(self, host, *, remote_host, remote_port):
        self.forwards.append((host.name, remote_host, remote_port))
        yield 54321

    def mask(self, text: str) -> str:
        return text


@pytest.fixture
def connect():
    with mock.patch.object(postgres.psycopg, "connect") as fake:
        fake.return_value = mock.MagicMock()
        yield fake


def test_a_connection_has_a_connect_timeout_keepalives_and_a_60s_statement_timeout(connect):
    gw = FakeGateway()
    with postgres.connect_via(gw, HOST, URL) as conn:
        assert conn is connect.return_value
    assert gw.forwards == [("db1", "172.31.250.21", 5432)]
    connect.assert_called_once_with(host="127.0.0.1", port=54321, user="athlete", password="pw-0123456789abcdef",
                                    dbname="athlete", connect_timeout=10, **KEEPALIVES,
                                    options="-c statement_timeout=60000", autocommit=True)


def test_a_caller_may_ask_for_a_longer_statement_timeout_and_a_lock_timeout(connect):
    with postgres.connect_via(FakeGateway(), HOST, URL, dbname="postgres", statement_timeout=600, lock_timeout=5):
        pass
    kwargs = connect.call_args.kwargs
    assert kwargs["dbname"] == "postgres"
    assert kwargs["options"] == "-c statement_timeout=600000 -c lock_timeout=5000"
    assert {k: kwargs[k] for k in KEEPALIVES} == KEEPALIVES


def test_a_timeout_of_zero_which_postgres_reads_as_no_limit_is_refused():
    with pytest.raises(ConfigError, match="statement_timeout must be a positive number"):
        postgres.connect_kwargs(5432, URL, statement_timeout=0)
    with pytest.raises(ConfigError, match="lock_timeout must be a positive number"):
        postgres.connect_kwargs(5432, URL, lock_timeout=0)


def test_a_session_to_the_accessory_is_bounded_too_and_pins_its_settings(connect):
    target = PgTarget(host=HOST, container="athlete-platform-postgres", user="athlete", dbname="athlete",
                      password="x" * 16, address="172.31.250.21")
    with postgres.session(FakeGateway(), target, "postgres") as conn:
        pass
    kwargs = connect.call_args.kwargs
    assert (kwargs["dbname"], kwargs["connect_timeout"], kwargs["options"]) == (
        "postgres", 10, "-c statement_timeout=60000")
    assert {k: kwargs[k] for k in KEEPALIVES} == KEEPALIVES
    executed = [c.args[0] for c in conn.execute.call_args_list]
    assert executed == list(postgres.SESSION_SETTINGS)


def test_the_swap_session_has_a_short_lock_timeout_and_statement_timeout(connect):
    target = PgTarget(host=HOST, container="pg", user="athlete", dbname="athlete", password="x" * 16)
    database.swap_databases(FakeGateway(), target, "athlete", "athlete_restore_1", "athlete_before_1", live=True)
    assert connect.call_args.kwargs["options"] == "-c statement_timeout=30000 -c lock_timeout=5000"
    executed = [c.args[0] for c in connect.return_value.execute.call_args_list]
    assert 'ALTER DATABASE "athlete" RENAME TO "athlete_before_1"' in executed
