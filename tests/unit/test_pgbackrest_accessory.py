"""The Postgres accessory with ``pitr:``: what ``accessory.boot`` writes and runs (fake gateway)."""

from __future__ import annotations

import dataclasses

import pytest

from ops import accessory
from ops.errors import ConfigError, HostError
from ops.inventory import load_environment
from ops.opsenv import _file_values
from tests.unit.test_accessory import PASSWORD, FakeGateway

PASSPHRASE = "repo-passphrase-0123456789abcdef"
S3_SECRET = "s3-secret-value-xyz"


@pytest.fixture
def env(tmp_path):
    app = tmp_path / "app.env"
    app.write_text(f"POSTGRES_USER=athlete\nPOSTGRES_PASSWORD={PASSWORD}\nPOSTGRES_DB=athlete\n")
    app.chmod(0o600)
    ops = tmp_path / "ops.env"
    ops.write_text(f"PGBACKREST_PASSPHRASE={PASSPHRASE}\nPGBACKREST_S3_KEY=key-id-1\n"
                   f"PGBACKREST_S3_SECRET={S3_SECRET}\n")
    ops.chmod(0o600)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    base = load_environment("sandbox")
    repos = tuple(dataclasses.replace(r, ca_file=ca) for r in base.pitr.repos)
    _file_values.cache_clear()
    return dataclasses.replace(base, env_file=app, ops_env_file=ops, pitr=dataclasses.replace(base.pitr, repos=repos))


def test_boot_archives_with_secrets_only_in_the_0600_env_file(env):
    gw = FakeGateway(env)
    result = accessory.boot(gw, "postgres")
    assert result.action == "created"
    env_file = next(data for path, data, mode in gw.puts if path.endswith("/accessories/postgres.env"))
    assert next(mode for path, _, mode in gw.puts if path.endswith("/accessories/postgres.env")) == 0o600
    text = env_file.decode()
    assert f"PGBACKREST_REPO1_CIPHER_PASS={PASSPHRASE}" in text and f"PGBACKREST_REPO2_S3_KEY_SECRET={S3_SECRET}" in text
    assert "PGBACKREST_STANZA=athlete-platform" in text and "PGBACKREST_PG1_USER=athlete" in text
    run = next(c for c in gw.ran if c.startswith("docker run"))
    assert "archive_mode=on" in run and "'archive_command=pgbackrest archive-push %p'" in run
    assert "/srv/athlete-platform/accessories/postgres-repo1-ca.pem:/etc/pgbackrest/repo1-ca.pem:ro" in run
    # an init reaps pgBackRest's async archiver, never the postmaster (it would take it for a crash)
    assert " --init " in run
    assert PASSPHRASE not in " ".join(gw.ran) and S3_SECRET not in " ".join(gw.ran)
    assert gw.mask(f"x {PASSPHRASE} {S3_SECRET} key-id-1") == "x ******** ******** ********"
    assert [c.split()[-1] for c in gw.ran if " pgbackrest " in c] == ["stanza-create", "check"]
    assert any(path.endswith("postgres-repo2-ca.pem") and mode == 0o644 for path, _, mode in gw.puts)


def test_a_second_boot_changes_nothing_but_checks_archiving_again(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    gw.ran.clear()
    assert accessory.boot(gw, "postgres").action == "unchanged"
    assert not any(c.startswith(("docker run", "docker stop")) for c in gw.ran)
    assert [c.split()[-1] for c in gw.ran if " pgbackrest " in c] == ["stanza-create", "check"]


def test_a_restored_volume_named_on_the_host_is_used_by_every_boot(env):
    gw = FakeGateway(env)
    real_run = gw.run

    def run(host, command, **kw):
        if tuple(command)[:1] == ("cat",):
            from ops.remote import RunResult
            return RunResult(host.name, "cat", stdout="athlete-platform-postgres-data-20261129221956\n")
        return real_run(host, command, **kw)

    gw.run = run
    accessory.boot(gw, "postgres")
    assert any("athlete-platform-postgres-data-20261129221956:/var/lib/postgresql/data" in c for c in gw.ran)


def test_missing_passphrase_is_one_config_error_naming_the_variable(env, tmp_path):
    (tmp_path / "ops.env").write_text("PGBACKREST_S3_KEY=k\nPGBACKREST_S3_SECRET=s\n")
    _file_values.cache_clear()
    with pytest.raises(ConfigError, match=r"PGBACKREST_PASSPHRASE is not set in .*ops.env: pgBackRest needs it"):
        accessory.boot(FakeGateway(env), "postgres")


def test_a_failing_stanza_check_fails_the_boot_with_what_to_fix(env):
    gw = FakeGateway(env)
    real_run = gw.run

    def run(host, command, **kw):
        if tuple(command)[-1:] == ("check",):
            from ops.remote import RunResult
            return RunResult(host.name, "check", stderr="ERROR: [039]: HTTP request failed", exit_code=39)
        return real_run(host, command, **kw)

    gw.run = run
    with pytest.raises(HostError, match=r"pgBackRest check of stanza athlete-platform failed.*HTTP request failed"):
        accessory.boot(gw, "postgres")
