"""TLS at the proxy on the sandbox fleet: a certificate really obtained from pebble (ACME
HTTP-01 through web1's real nginx), served by every web host; then the operator's own files.

Every TLS check is a real TLS client on 127.0.0.1 (through an SSH forward to each host's
https port), SNI = the domain, verifying against pebble's issuing root (``/roots/0``) or the
test CA. The sandbox inventory stays plain http: these tests use a copy with ``proxy.tls``
(a throwaway file in inventory/) and put every proxy back to plain http at the end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from cryptography import x509

from ops.deploy.pipeline import AppEnv
from ops.deploy.release import current_release
from ops.deploy.switch import ensure_proxy, wait_serving
from ops.inventory import load_environment
from ops.layout import Layout
from ops.remote import Gateway
from ops.tls import hostfiles
from tests.support.deployed import deployed_app  # noqa: F401 - fixture
from tests.support.fleet import inv
from tests.support.inventory_copy import inventory_copy
from tests.support.pebble import make_ca, make_leaf, running_pebble
from tests.support.tls_fleet import (
    DOMAIN,
    http_port_of,
    installed_digests,
    plain_http_again,
    remove_inventory,
    tokens_left,
    write_inventory,
)
from tests.support.websocket import ws_frame

HSTS = "strict-transport-security"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
# Bounded concurrent client during a renewal: threads x requests each.
CLIENT_THREADS = 4
CLIENT_MAX_REQUESTS = 150


# -- a tiny HTTP/1.1 client over a socket we control (SNI and trust chosen per call) ---------------
def request(sock: socket.socket, path: str, *, host: str = DOMAIN, extra: str = "") -> tuple[int, dict, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(lines[0].split()[1]), headers, body


def tls_context(root_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@contextmanager
def tls_socket(port: int, ctx: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        yield tls


def https_get(port: int, ctx: ssl.SSLContext, path: str = "/api/health") -> tuple[int, dict, bytes]:
    with tls_socket(port, ctx) as s:
        return request(s, path)


def http_get(port: int, path: str) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return request(s, path)


def served_serial(port: int, ctx: ssl.SSLContext) -> int:
    with tls_socket(port, ctx) as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


@contextmanager
def https_ports(env) -> Iterator[dict[str, int]]:
    """host name -> a local port reaching that host's published https port (SSH forward)."""
    with Gateway(env) as gw:
        ports = {}
        stack = []
        try:
            for h in env.with_roles("web"):
                cm = gw.forward_local(h, remote_host="127.0.0.1", remote_port=env.proxy.tls.https_port)
                ports[h.name] = cm.__enter__()
                stack.append(cm)
            yield ports
        finally:
            for cm in reversed(stack):
                cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def acme(sandbox_env, deployed_app, tmp_path_factory):  # noqa: F811 - the fixture
    work = tmp_path_factory.mktemp("tls")
    with running_pebble(work / "pebble", http_port=http_port_of(sandbox_env, "web1")) as pebble:
        name = write_inventory(sandbox_env, {
            "domains": [DOMAIN], "certificate": "acme", "directory": pebble.directory,
            "email": "ops@ops-sandbox.test", "ca_file": str(pebble.ca_file),
            "account_key": str(work / "acme-account.key"), "renew_before_days": 30, "https_port": 443})
        try:
            yield name, load_environment(name), pebble, work
        finally:
            remove_inventory(name)
            plain_http_again(sandbox_env)


@pytest.fixture(scope="module")
def issued(acme):
    name, env, pebble, work = acme
    proc = inv("tls.issue", "--host", name, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return name, env, tls_context(pebble.issuing_root_pem()), work, proc


# -- ACME ----------------------------------------------------------------------------------------
def test_a_certificate_from_pebble_is_served_on_every_web_host_for_the_domain(issued):
    name, env, ctx, work, proc = issued
    assert "issued:" in proc.stdout and DOMAIN in proc.stdout
    with https_ports(env) as ports:
        serials = {}
        for host, port in ports.items():
            with tls_socket(port, ctx) as s:  # verification on: chain to pebble's root, name = DOMAIN
                assert s.version() in ("TLSv1.2", "TLSv1.3")
                cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
                serials[host] = cert.serial_number
                status, headers, _ = request(s, "/api/health")
            assert status == 200, host
        assert len(set(serials.values())) == 1 and len(serials) == 2


def test_the_account_key_is_private_and_no_token_is_left_behind(issued):
    name, env, ctx, work, _ = issued
    assert (work / "acme-account.key").stat().st_mode & 0o777 == 0o600
    assert tokens_left(env) == {"web1": [], "web2": []}
    with Gateway(env) as gw:
        layout = Layout(env)
        for h in env.with_roles("web"):
            mode = gw.query(h, ("stat", "-c", "%a", hostfiles.key_path(layout))).stdout.strip()
            assert mode == "600", h.name


def test_plain_http_redirects_with_301_and_hsts_is_sent_only_over_tls(issued):
    name, env, ctx, _, _ = issued
    status, headers, _ = http_get(http_port_of(env, "web1"), "/some/page?x=1")
    assert status == 301
    assert headers["location"] == f"https://{DOMAIN}/some/page?x=1"
    assert HSTS not in headers
    # The challenge path stays plain http (renewals): a missing token is a 404, not a redirect.
    status, headers, _ = http_get(http_port_of(env, "web2"), "/.well-known/acme-challenge/none")
    assert status == 404 and HSTS not in headers
    with https_ports(env) as ports:
        status, headers, _ = https_get(ports["web2"], ctx, "/")
    assert status == 200
    assert headers[HSTS] == "max-age=31536000; includeSubDomains"
    for name_ in ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"):
        assert name_ in headers


def test_a_socket_io_websocket_upgrade_works_over_tls(issued):
    name, env, ctx, _, _ = issued
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with https_ports(env) as ports, tls_socket(ports["web1"], ctx) as s:
        s.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {DOMAIN}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = s.recv(4096)
            assert chunk, "connection closed during the upgrade"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
        assert b"sec-websocket-accept: " + accept.lower() in head.lower()
        s.sendall(ws_frame(0x1, b"over wss"))
        echoed = head.partition(b"\r\n\r\n")[2]
        while b"over wss" not in echoed and len(echoed) < 65536:
            chunk = s.recv(4096)
            assert chunk, "no echo"
            echoed += chunk
    assert b"over wss" in echoed


def test_status_reports_tls_on_and_days_left_per_web_host(issued):
    name, *_ = issued
    proc = inv("tls.status", "--host", name, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = json.loads(proc.stdout)["data"]["hosts"]
    assert [h["host"] for h in hosts] == ["web1", "web2"]
    for h in hosts:
        assert h["tls_on"] is True and h["certificate"]["names"] == [DOMAIN]
        assert h["days_left"] > 30


def test_smoke_passes_over_https_on_every_web_host_with_redirect_hsts_and_the_certificate(issued, acme):
    _, env, _, work, _ = issued
    root = work / "pebble-issuing-root.pem"
    root.write_bytes(acme[2].issuing_root_pem())
    # smoke verifies against the CA that issued the site's certificate (smoke.ca_file): pebble's root here.
    with inventory_copy(env, "tlssmoke", smoke={"ca_file": str(root)}) as smoke_env:
        proc = inv("smoke", "--host", smoke_env, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = {(c["target"], c["name"]): c for c in json.loads(proc.stdout)["data"]["checks"]}
    for host in ("web1", "web2"):
        assert got[(host, "page /")]["ok"] and got[(host, "page /api/health")]["ok"]
        assert got[(host, "header Strict-Transport-Security")]["ok"]  # required over TLS
        assert got[(host, "http -> https")]["detail"].startswith("301 https://")
        cert = got[(host, "certificate")]
        assert cert["ok"] and cert["detail"].startswith(f"valid for {DOMAIN}, ")
        assert got[(host, "websocket upgrade")]["ok"] and got[(host, "websocket upgrade")]["detail"].startswith("101 ")


def test_a_deploys_proxy_step_keeps_tls_without_recreating_or_reloading_and_its_check_uses_https(issued):
    name, env, ctx, _, _ = issued
    layout = Layout(env)
    site = f"{layout.proxy_conf_dir}/{env.app}.conf"
    with Gateway(env) as gw:
        app = AppEnv.load(env, gw.mask).app_settings()
        for h in env.with_roles("web"):
            fmt = "{{.State.StartedAt}}"
            started = gw.query(h, ("docker", "inspect", "-f", fmt, layout.proxy_container)).stdout
            stamp = gw.query(h, ("stat", "-c", "%Y %s", site)).stdout
            ensure_proxy(gw, h, app)  # what every deploy does on every web host
            assert gw.query(h, ("docker", "inspect", "-f", fmt, layout.proxy_container)).stdout == started
            assert gw.query(h, ("stat", "-c", "%Y %s", site)).stdout == stamp
            assert "listen 443 ssl http2" in gw.query(h, ("cat", site)).stdout
            release = current_release(gw, h)
            wait_serving(gw, h, release, timeout=10)  # through https now: plain http only redirects


def test_renew_does_nothing_while_the_certificate_is_current(issued):
    name, env, ctx, _, _ = issued
    with https_ports(env) as ports:
        before = served_serial(ports["web1"], ctx)
        proc = inv("tls.renew", "--host", name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "nothing to renew" in proc.stdout
        assert served_serial(ports["web1"], ctx) == before


def test_renew_dry_run_prints_the_plan_and_changes_nothing(issued):
    name, env, ctx, _, _ = issued
    with https_ports(env) as ports:
        before = served_serial(ports["web2"], ctx)
        proc = inv("tls.renew", "--host", name, "--force", "--dry-run")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "plan: renew the certificate" in proc.stdout and "nothing was changed" in proc.stdout
        assert "forced (--force)" in proc.stdout
        assert served_serial(ports["web2"], ctx) == before


def test_forced_renewal_replaces_the_certificate_with_a_reload_and_no_failed_request(issued):
    name, env, ctx, _, _ = issued
    failures: list[str] = []
    done = [0]
    stop = threading.Event()
    lock = threading.Lock()
    with https_ports(env) as ports:
        before = {h: served_serial(p, ctx) for h, p in ports.items()}

        def client(port: int) -> None:
            for _ in range(CLIENT_MAX_REQUESTS):
                if stop.is_set():
                    return
                try:
                    # /api/info: answered by the app alone (the health path also asks the database).
                    status, _, _ = https_get(port, ctx, "/api/info")
                    ok = status == 200
                except (OSError, ssl.SSLError) as exc:
                    ok, status = False, repr(exc)
                with lock:
                    done[0] += 1
                    if not ok:
                        failures.append(str(status))

        threads = [threading.Thread(target=client, args=(ports[h],), daemon=True)
                   for h in ("web1", "web2") for _ in range(CLIENT_THREADS // 2)]
        for t in threads:
            t.start()
        try:
            proc = inv("tls.renew", "--host", name, "--force", timeout=300)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "installed, nginx reloaded" in proc.stdout
        after = {h: served_serial(p, ctx) for h, p in ports.items()}
    assert all(after[h] != before[h] for h in before)
    assert len(set(after.values())) == 1
    assert done[0] > 0 and failures == []


# -- operator files --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files_mode(acme):
    """A files-mode inventory on the same fleet, with a pair made by a throwaway CA."""
    _, _, _, work = acme
    sandbox_env = load_environment("sandbox")
    ca = make_ca("operator test CA")
    cert, key = make_leaf(ca, [DOMAIN], days=60)
    (work / "site.crt").write_bytes(cert)
    (work / "site.key").write_bytes(key)
    os.chmod(work / "site.key", 0o600)
    name = write_inventory(sandbox_env, {"domains": [DOMAIN], "certificate": "files",
                                         "cert_file": str(work / "site.crt"), "key_file": str(work / "site.key")})
    from cryptography.hazmat.primitives import serialization
    root = ca[1].public_bytes(serialization.Encoding.PEM)
    try:
        yield name, load_environment(name), tls_context(root), ca, work
    finally:
        remove_inventory(name)


def test_files_mode_uploads_the_operators_pair_once_and_serves_it(issued, files_mode):
    name, env, ctx, ca, work = files_mode
    proc = inv("tls.issue", "--host", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("installed, nginx reloaded") == 2
    want = x509.load_pem_x509_certificate((work / "site.crt").read_bytes()).serial_number
    with https_ports(env) as ports:
        assert {served_serial(p, ctx) for p in ports.values()} == {want}
    again = inv("tls.issue", "--host", name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("same certificate already installed") == 2


@pytest.mark.parametrize("case", ["missing key file", "key of another certificate", "expired certificate",
                                  "certificate for another name"])
def test_bad_operator_files_are_one_line_errors_and_nothing_is_uploaded(files_mode, case):
    name, env, ctx, ca, work = files_mode
    before = installed_digests(env)
    cert = (work / "site.crt").read_bytes()
    bad = work / f"bad-{case.replace(' ', '-')}"
    bad.mkdir(exist_ok=True)
    if case == "missing key file":
        (bad / "c.pem").write_bytes(cert)
        expect = "does not exist"
    elif case == "key of another certificate":
        (bad / "c.pem").write_bytes(cert)
        (bad / "k.pem").write_bytes(make_leaf(ca, [DOMAIN])[1])
        expect = "is not the key of the certificate"
    elif case == "expired certificate":
        c, k = make_leaf(ca, [DOMAIN], days=-2)
        (bad / "c.pem").write_bytes(c)
        (bad / "k.pem").write_bytes(k)
        expect = "expired on"
    else:
        c, k = make_leaf(ca, ["other.ops-sandbox.test"])
        (bad / "c.pem").write_bytes(c)
        (bad / "k.pem").write_bytes(k)
        expect = f"does not name {DOMAIN}"
    raw = yaml.safe_load(env.path.read_text())
    raw["proxy"]["tls"].update(cert_file=str(bad / "c.pem"), key_file=str(bad / "k.pem"))
    env.path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        proc = inv("tls.issue", "--host", name)
    finally:
        raw["proxy"]["tls"].update(cert_file=str(work / "site.crt"), key_file=str(work / "site.key"))
        env.path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0], proc.stderr
    assert installed_digests(env) == before


def test_back_to_plain_http_no_hsts_and_the_site_answers(acme, sandbox_env):
    plain_http_again(sandbox_env)
    status, headers, _ = http_get(http_port_of(sandbox_env, "web1"), "/api/health")
    assert status == 200 and HSTS not in headers
    with Gateway(sandbox_env) as gw:
        for h in sandbox_env.with_roles("web"):
            ports = gw.query(h, ("docker", "port", Layout(sandbox_env).proxy_container)).stdout
            assert "443" not in ports, h.name
