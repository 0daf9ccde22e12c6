"""The gateway against real sshd hosts: quoting, stdin, timeouts, streaming, dry-run, host keys."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import paramiko
import pytest

from ops.commands import shell
from ops.doctor import run_doctor
from ops.errors import CommandTimeout, HostKeyError, RemoteCommandFailed
from ops.known_hosts import KeyEntry, host_pattern, replace_host
from ops.masking import Masker
from ops.remote import Gateway


def exists(gw, host, path) -> bool:
    return gw.query(host, ("test", "-e", path), check=False).exit_code == 0


@pytest.mark.parametrize("hostile", ["a b;touch /tmp/pwned", "$(touch /tmp/pwned)", "`touch /tmp/pwned`",
                                     "'; touch /tmp/pwned; '", "x\ntouch /tmp/pwned"])
def test_hostile_values_reach_the_remote_command_as_one_literal_argument(gw, host, hostile):
    gw.query(host, ("rm", "-f", "/tmp/pwned"))
    out = gw.query(host, ("printf", "%s", hostile)).stdout
    assert out == hostile
    out = gw.query(host, shell("printf '%s' {v}", v=hostile)).stdout
    assert out == hostile
    assert not exists(gw, host, "/tmp/pwned")


def test_secret_sent_on_stdin_arrives_and_never_shows_in_output_or_argv(gw, host, marker_name):
    secret = "s3cr3t-value-that-must-not-leak"
    gw.mask.add(secret)
    path = f"/tmp/{marker_name}"
    gw.run(host, shell("umask 077 && cat > {p}", p=path), stdin=secret)
    try:
        assert gw.query(host, ("stat", "-c", "%a", path)).stdout.strip() == "600"
        shown = gw.query(host, ("cat", path))
        assert shown.stdout == "********"  # masked on the way back to the operator
        assert hashlib.sha256(secret.encode()).hexdigest() in gw.query(host, ("sha256sum", path)).stdout
    finally:
        gw.run(host, ("rm", "-f", path))


def test_failed_command_raises_with_exit_code_and_stderr(gw, host):
    with pytest.raises(RemoteCommandFailed) as err:
        gw.query(host, ("sh", "-c", "echo boom >&2; exit 7"))
    assert err.value.exit_code == 7
    assert err.value.host == "web1"
    assert "boom" in str(err.value)


def test_command_timeout_is_a_clear_error(gw, host):
    with pytest.raises(CommandTimeout) as err:
        gw.query(host, ("sleep", "20"), timeout=1)
    assert "timed out after 1s" in str(err.value)
    assert str(err.value).startswith("web1: ")


def test_dry_run_plans_mutating_commands_and_runs_none(sandbox_env, host, marker_name):
    path = f"/tmp/{marker_name}"
    with Gateway(sandbox_env) as real:
        real.run(host, ("rm", "-f", path))
    lines = []
    with Gateway(sandbox_env, dry_run=True, echo=lines.append) as dry:
        result = dry.run(host, ("touch", path))
        dry.put(host, b"data", path + ".put")
        # Read-only queries still run in dry-run: a plan may depend on what is there.
        assert dry.query(host, ("hostname",)).stdout.strip() == "web1"
    assert result.dry_run
    assert dry.plan == [("web1", f"touch {path}"), ("web1", f"put 4 bytes -> {path}.put (mode 600)")]
    assert lines[0] == f"[dry-run] web1$ touch {path}"
    with Gateway(sandbox_env) as real:
        assert not exists(real, host, path)
        assert not exists(real, host, path + ".put")


def test_put_writes_atomically_with_mode_set(gw, host, marker_name):
    path = f"/tmp/{marker_name}.env"
    gw.put(host, b"KEY=value\n", path, mode=0o600)
    try:
        assert gw.query(host, ("stat", "-c", "%a %U", path)).stdout.split() == ["600", "deploy"]
        assert gw.query(host, ("cat", path)).stdout == "KEY=value\n"
    finally:
        gw.run(host, ("rm", "-f", path))


def test_stream_yields_exact_bytes_while_draining_large_stderr(gw, host, marker_name):
    blob = f"/tmp/{marker_name}.bin"
    gw.run(host, ("sh", "-c", f"head -c 24000000 /dev/urandom > {blob}"))
    try:
        expected = gw.query(host, ("sha256sum", blob)).stdout.split()[0]
        # 4 MB of stderr first: more than an SSH window, so an undrained stderr would stall.
        cmd = shell("yes stderr-noise | head -c 4000000 >&2; cat {b}", b=blob)
        digest = hashlib.sha256()
        size = 0
        with gw.stream(host, cmd) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        assert size == 24_000_000
        assert digest.hexdigest() == expected
        assert "stderr-noise" in stream.stderr  # tail kept for error messages
    finally:
        gw.run(host, ("rm", "-f", blob))


def test_stream_failure_raises_with_the_remote_stderr(gw, host):
    with pytest.raises(RemoteCommandFailed) as err:
        with gw.stream(host, ("sh", "-c", "echo partial; echo 'pg_dump: error: connection refused' >&2; exit 3")) as s:
            assert s.read() == b"partial\n"
    assert err.value.exit_code == 3
    assert "pg_dump: error: connection refused" in str(err.value)


def test_changed_host_key_is_refused_with_fingerprints_and_other_hosts_still_run(sandbox_env, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(sandbox_env.ssh.known_hosts, known)
    web2 = sandbox_env.hosts["web2"]
    impostor = paramiko.ECDSAKey.generate()
    pattern = host_pattern(web2.address, web2.port)
    replace_host(known, pattern, [KeyEntry.from_key(pattern, impostor)])
    env = dataclasses.replace(sandbox_env, ssh=dataclasses.replace(sandbox_env.ssh, known_hosts=known))

    with Gateway(env) as gw:
        results = gw.map(lambda h: gw.query(h, ("hostname",)).stdout.strip())
    assert results.ok == {"web1": "web1", "db1": "db1"}
    err = results.failed["web2"]
    assert isinstance(err, HostKeyError)
    assert "HOST KEY CHANGED" in str(err) and "SHA256:" in str(err)
    assert "inv hosts.trust --host sandbox:web2 --replace" in str(err)


def test_unknown_host_key_is_refused_not_added(sandbox_env, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = dataclasses.replace(sandbox_env, ssh=dataclasses.replace(sandbox_env.ssh, known_hosts=known))
    with Gateway(env) as gw:
        with pytest.raises(HostKeyError) as err:
            gw.connection(env.hosts["db1"])
    assert "is not in known_hosts" in str(err.value)
    assert "inv hosts.trust --host sandbox:db1" in str(err.value)
    assert known.read_text() == ""  # nothing trusted on first use


def test_doctor_reports_all_three_hosts_healthy(sandbox_env):
    with Gateway(sandbox_env) as gw:
        reports = run_doctor(gw, list(sandbox_env.hosts.values()))
    assert [r.host for r in reports] == ["web1", "web2", "db1"]
    for report in reports:
        assert report.ok, report.to_dict()
        names = [c.name for c in report.checks]
        base = ["host key", "ssh", "docker", "disk docker", "disk app", "registry", "clock"]
        # the database host also answers for pgBackRest's stanza (per repository once Postgres runs)
        extra = names[len(base):]
        assert names[:len(base)] == base, names
        assert (all(n.startswith("pitr") for n in extra) and extra) if report.host == "db1" else not extra, names


def test_masked_secret_never_appears_in_errors(sandbox_env, host):
    secret = "hunter2-very-secret"
    with Gateway(sandbox_env, masker=Masker([secret])) as gw:
        with pytest.raises(RemoteCommandFailed) as err:
            gw.query(host, ("sh", "-c", f"echo {secret} >&2; exit 1"))
    assert secret not in str(err.value)
    assert secret not in err.value.stderr
