"""ops/remote.py Gateway without any SSH server.

Hosts point at 127.0.0.1 ports nobody listens on; the only network traffic is a
refused local TCP connect in the unreachable-host tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from ops.commands import shell
from ops.errors import HostError, HostUnreachable, OpsError, RemoteCommandFailed
from ops.inventory import Environment, load_environment
from ops.masking import Masker
from ops.remote import FleetError, Gateway, HostResults, RunResult, fetch_host_keys


def closed_ports(n: int) -> list[int]:
    """Ports the kernel just handed out and nobody listens on any more."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_env(tmp_path: Path, host_names: list[str], *, ports: list[int] | None = None,
             parallel: int = 10) -> Environment:
    ports = ports or closed_ports(len(host_names))
    hosts = {name: {"address": "127.0.0.1", "port": port, "roles": ["web"] if i == 0 or "web" in name else ["db"]}
             for i, (name, port) in enumerate(zip(host_names, ports, strict=True))}
    data = {
        "app": "shop",
        "image": "shop/web",
        "registry": {"url": "127.0.0.1:5000"},
        "ssh": {"user": "deploy", "known_hosts": "inventory/test.known_hosts", "connect_timeout": 2,
                "parallel": parallel},
        "hosts": hosts,
        "uploads": {"storage": "shared", "path": "/mnt/shop-uploads"},  # several web hosts: one set of uploads
    }
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    (inv / "test.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_environment("test", inv)


@pytest.fixture
def env(tmp_path) -> Environment:
    return make_env(tmp_path, ["web1", "web2", "db1"])


@pytest.fixture
def echoed() -> list[str]:
    return []


# -- (a) map: aggregation --------------------------------------------------------


def test_map_splits_results_and_failures_per_host(env):
    gw = Gateway(env, echo=lambda _line: None)

    def work(host):
        if host.name == "web2":
            raise OpsError("disk full", hint="free some space")
        if host.name == "db1":
            raise RuntimeError("boom")
        return f"done on {host.name}"

    results = gw.map(work)

    assert isinstance(results, HostResults)
    assert results.ok == {"web1": "done on web1"}
    assert list(results.failed) == ["web2", "db1"]

    web2 = results.failed["web2"]
    assert type(web2) is OpsError
    assert web2.host == "web2"  # filled in by map
    assert str(web2) == "web2: disk full — free some space"

    db1 = results.failed["db1"]
    assert type(db1) is HostError
    assert db1.host == "db1"
    assert db1.message == "unexpected RuntimeError: boom"
    assert str(db1) == "db1: unexpected RuntimeError: boom"
    assert isinstance(db1.__cause__, RuntimeError)


def test_map_keys_results_in_input_order_not_completion_order(tmp_path):
    env = make_env(tmp_path, ["web1", "web2", "web3", "web4"])
    gw = Gateway(env, parallel=4)
    delays = {"web1": 0.06, "web2": 0.0, "web3": 0.04, "web4": 0.02}
    hosts = [env.hosts[n] for n in ("web3", "web1", "web4", "web2")]

    def work(host):
        time.sleep(delays[host.name])
        if host.name in ("web1", "web2"):
            raise OpsError(f"failed {host.name}")
        return host.name.upper()

    results = gw.map(work, hosts)
    assert list(results.ok.items()) == [("web3", "WEB3"), ("web4", "WEB4")]
    assert list(results.failed) == ["web1", "web2"]


def test_map_keeps_the_host_an_error_already_names(env):
    gw = Gateway(env)

    def work(host):
        raise RemoteCommandFailed("exit 1: false", host="db1", exit_code=1)

    results = gw.map(work, [env.hosts["web1"]])
    assert results.failed["web1"].host == "db1"
    assert results.failed["web1"].exit_code == 1


def test_map_masks_secrets_in_unexpected_errors(env):
    gw = Gateway(env, masker=Masker(["s3cr3t-token"]))

    def work(host):
        raise ValueError("token s3cr3t-token rejected")

    results = gw.map(work, [env.hosts["web1"]])
    assert str(results.failed["web1"]) == "web1: unexpected ValueError: token ******** rejected"


def test_map_over_no_hosts_returns_empty_results(env):
    calls = []
    results = Gateway(env).map(calls.append, [])
    assert (results.ok, results.failed, calls) == ({}, {}, [])


def test_map_defaults_to_every_host_of_the_environment(env):
    results = Gateway(env).map(lambda h: h.port)
    assert results.ok == {name: h.port for name, h in env.hosts.items()}


def test_fleet_error_has_one_line_per_failed_host(env):
    gw = Gateway(env)

    def work(host):
        if host.name == "web2":
            raise OpsError("disk full", hint="free some space")
        if host.name == "db1":
            raise RuntimeError("boom")
        return 1

    results = gw.map(work)
    with pytest.raises(FleetError) as excinfo:
        results.raise_if_failed("deploy")
    err = excinfo.value
    assert str(err) == ("deploy: 2 of 3 host(s) failed\n"
                        "  web2: disk full — free some space\n"
                        "  db1: unexpected RuntimeError: boom")
    assert err.failed is results.failed
    assert isinstance(err, OpsError)


def test_fleet_error_names_hosts_whose_error_lacks_one():
    err = FleetError("backup", {"db1": OpsError("no space")}, total=1)
    assert str(err) == "backup: 1 of 1 host(s) failed\n  db1: no space"


def test_raise_if_failed_is_silent_when_every_host_succeeded(env):
    results = Gateway(env).map(lambda h: h.name)
    results.raise_if_failed("deploy")  # no exception
    assert list(results.ok) == ["web1", "web2", "db1"]


# -- (a) map: bounded parallelism -------------------------------------------------


def concurrency_probe(bound: int):
    """fn for map that records the peak number of simultaneous calls.

    The first calls wait (up to 5 s) until ``bound`` of them run at once, so the
    peak reaches the bound without relying on timing; later calls linger briefly
    so an unbounded pool would overshoot.
    """
    cond = threading.Condition()
    state = {"active": 0, "peak": 0, "calls": 0}

    def fn(host):
        with cond:
            state["active"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["active"])
            cond.notify_all()
            cond.wait_for(lambda: state["peak"] >= bound, timeout=5)
        time.sleep(0.01)
        with cond:
            state["active"] -= 1
        return host.name

    return fn, state


@pytest.mark.parametrize("bound", [1, 2, 3, 5])
def test_map_runs_at_most_parallel_hosts_at_once(tmp_path, bound):
    names = [f"web{i}" for i in range(1, 9)]
    env = make_env(tmp_path, names)
    fn, state = concurrency_probe(bound)

    results = Gateway(env, parallel=bound).map(fn)

    assert list(results.ok) == names
    assert state["calls"] == 8
    assert state["peak"] <= bound
    assert state["peak"] == bound  # > 1 whenever bound > 1: hosts really run side by side


def test_map_bound_defaults_to_ssh_parallel(tmp_path):
    env = make_env(tmp_path, [f"web{i}" for i in range(1, 7)], parallel=2)
    gw = Gateway(env)
    assert gw.parallel == 2
    fn, state = concurrency_probe(2)
    gw.map(fn)
    assert state["peak"] == 2


# -- (b) dry-run -----------------------------------------------------------------------


def test_dry_run_plans_a_mutating_command_instead_of_running_it(env, echoed):
    gw = Gateway(env, dry_run=True, echo=echoed.append)
    web1 = env.hosts["web1"]

    result = gw.run(web1, ("docker", "rm", "-f", "shop; rm -rf /"))

    assert isinstance(result, RunResult)
    assert result.dry_run is True
    assert (result.host, result.command) == ("web1", "docker rm -f 'shop; rm -rf /'")
    assert (result.stdout, result.stderr, result.exit_code, result.ok) == ("", "", 0, True)
    assert gw.plan == [("web1", "docker rm -f 'shop; rm -rf /'")]
    assert echoed == ["[dry-run] web1$ docker rm -f 'shop; rm -rf /'"]
    assert gw._conns == {}


def test_dry_run_plan_keeps_call_order_across_hosts(env, echoed):
    gw = Gateway(env, dry_run=True, echo=echoed.append)
    gw.run(env.hosts["db1"], ("systemctl", "stop", "app"))
    gw.run(env.hosts["web1"], shell("cd {d} && ls", d="/srv/my app"))
    gw.put(env.hosts["web2"], b"KEY=value\n", "/srv/shop/.env")

    assert gw.plan == [
        ("db1", "systemctl stop app"),
        ("web1", "cd '/srv/my app' && ls"),
        ("web2", "put 10 bytes -> /srv/shop/.env (mode 600)"),
    ]
    assert echoed == [
        "[dry-run] db1$ systemctl stop app",
        "[dry-run] web1$ cd '/srv/my app' && ls",
        "[dry-run] web2: would write 10 bytes to /srv/shop/.env (mode 600)",
    ]
    assert gw._conns == {}


def test_dry_run_put_records_size_path_and_mode_not_content(env, echoed):
    gw = Gateway(env, dry_run=True, echo=echoed.append)
    gw.put(env.hosts["web1"], b"DATABASE_URL=postgres://u:pw@db/app\n", "/srv/shop/app.env", mode=0o640)

    assert gw.plan == [("web1", "put 36 bytes -> /srv/shop/app.env (mode 640)")]
    assert echoed == ["[dry-run] web1: would write 36 bytes to /srv/shop/app.env (mode 640)"]
    assert "postgres" not in repr(gw.plan) + repr(echoed)


def test_dry_run_masks_secrets_in_plan_echo_and_result(env, echoed):
    gw = Gateway(env, dry_run=True, echo=echoed.append, masker=Masker(["s3cr3t-pass"]))
    web1 = env.hosts["web1"]

    result = gw.run(web1, ("psql", "--password=s3cr3t-pass", "-c", "ALTER USER app PASSWORD 's3cr3t-pass'"))
    gw.run(web1, shell("echo {p} | chpasswd", p="deploy:s3cr3t-pass"))

    assert gw.plan == [
        ("web1", "psql --password=******** -c 'ALTER USER app PASSWORD '\"'\"'********'\"'\"''"),
        ("web1", "echo deploy:******** | chpasswd"),
    ]
    assert result.command == gw.plan[0][1]
    everything = repr(gw.plan) + "\n".join(echoed) + result.command
    assert "s3cr3t-pass" not in everything


def test_dry_run_put_masks_secrets_in_the_path(env, echoed):
    gw = Gateway(env, dry_run=True, echo=echoed.append, masker=Masker(["s3cr3t-pass"]))
    gw.put(env.hosts["web1"], b"x", "/srv/shop/s3cr3t-pass.env")
    assert "s3cr3t-pass" not in repr(gw.plan) + "\n".join(echoed)


def test_dry_run_opens_no_tcp_connection(tmp_path, echoed):
    # A real listener on the host's port: any connection attempt would be accepted here.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        env = make_env(tmp_path, ["web1"], ports=[listener.getsockname()[1]])
        gw = Gateway(env, dry_run=True, echo=echoed.append)

        gw.run(env.hosts["web1"], ("rm", "-rf", "/srv/shop/releases/old"))
        gw.put(env.hosts["web1"], b"data", "/srv/shop/file")
        gw.map(lambda h: gw.run(h, ("true",)))
        gw.close()

        with pytest.raises(BlockingIOError):
            listener.accept()
    assert len(gw.plan) == 3
    assert gw._conns == {}


def test_dry_run_still_runs_read_only_queries(env):
    # query() is read-only, so dry-run lets it through: here it tries to connect.
    gw = Gateway(env, dry_run=True, echo=lambda _line: None)
    with pytest.raises(HostUnreachable):
        gw.query(env.hosts["web1"], ("docker", "ps"))
    assert gw.plan == []


def test_dry_run_with_a_plain_str_command_is_refused(env):
    gw = Gateway(env, dry_run=True, echo=lambda _line: None)
    with pytest.raises(TypeError):
        gw.run(env.hosts["web1"], "rm -rf /")
    assert gw.plan == []


def test_default_echo_prints_the_plan_to_stderr(env, capsys):
    Gateway(env, dry_run=True).run(env.hosts["web1"], ("touch", "/x"))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "[dry-run] web1$ touch /x\n"


# -- (c) unreachable hosts -----------------------------------------------------------


def test_closed_port_raises_host_unreachable_naming_the_host(env):
    web1 = env.hosts["web1"]
    with contextlib.closing(Gateway(env)) as gw, pytest.raises(HostUnreachable) as excinfo:
        gw.connection(web1)
    err = excinfo.value
    assert err.host == "web1"
    assert err.message == f"cannot reach deploy@127.0.0.1:{web1.port}: Connection refused"
    assert err.hint == "is the host up and sshd running? check with: inv doctor"
    assert str(err).startswith("web1: cannot reach deploy@127.0.0.1:")


def test_run_on_a_closed_port_raises_host_unreachable(env):
    with contextlib.closing(Gateway(env)) as gw, pytest.raises(HostUnreachable, match="cannot reach"):
        gw.run(env.hosts["db1"], ("true",))


def test_map_reports_every_unreachable_host(env):
    with contextlib.closing(Gateway(env)) as gw:
        results = gw.map(lambda h: gw.run(h, ("true",)))
    assert results.ok == {}
    assert list(results.failed) == ["web1", "web2", "db1"]
    assert all(type(e) is HostUnreachable for e in results.failed.values())
    with pytest.raises(FleetError) as excinfo:
        results.raise_if_failed("doctor")
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "doctor: 3 of 3 host(s) failed"
    assert [line.split(":")[0] for line in lines[1:]] == ["  web1", "  web2", "  db1"]
    assert all("cannot reach deploy@127.0.0.1:" in line for line in lines[1:])


def test_fetch_host_keys_on_a_closed_port_raises_host_unreachable(env):
    web2 = env.hosts["web2"]
    with pytest.raises(HostUnreachable) as excinfo:
        fetch_host_keys(web2, timeout=2)
    assert excinfo.value.host == "web2"
    assert excinfo.value.message == f"cannot reach 127.0.0.1:{web2.port}: Connection refused"
