"""Debian's pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv, on 127.0.0.1.

``running_pebble(http_port)`` starts both for a test module and stops them (by pid) after:

- pebble serves ACME over TLS with a certificate from a throwaway CA made here (its
  ``ca.pem`` is what the client trusts: ``proxy.tls.ca_file``);
- pebble-challtestsrv is pebble's DNS and answers every name with 127.0.0.1, so the
  HTTP-01 validation of any domain goes to 127.0.0.1:``http_port`` (web1's published
  proxy port: a real nginx on a real host of the fleet);
- ``PEBBLE_VA_NOSLEEP=1`` (no random validation delay), ``PEBBLE_WFE_NONCEREJECT=0`` (no
  random bad-nonce rejections). Nothing is made always-valid: pebble really fetches the token.

Pebble makes a new issuing root at every start; ``issuing_root_pem()`` fetches it from the
management port (``/roots/0``) so clients can verify what the proxies serve.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "ops test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca: tuple, names: list[str], *, ips: tuple[str, ...] = (), days: float = 30,
              not_before: dt.datetime | None = None, rsa_bits: int = 0) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) signed by ``ca``; a negative ``days`` gives an expired one;
    ``rsa_bits``: an RSA key of that size instead of ECDSA P-256."""
    import ipaddress

    ca_key, ca_cert = ca
    key = (rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits) if rsa_bits
           else ec.generate_private_key(ec.SECP256R1()))
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=max(0.0, -days) + 1)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@dataclass
class Pebble:
    directory: str
    ca_file: Path
    management: str

    def issuing_root_pem(self) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=ctx, timeout=10) as resp:
            return resp.read()


def _wait_ready(url: str, ca_file: Path, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tail = "\n".join(log.read_text()[-2000:] for log in logs)
            raise RuntimeError(f"pebble did not come up at {url}:\n{tail}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_pebble(workdir: Path, *, http_port: int) -> Iterator[Pebble]:
    if not shutil.which("pebble") or not shutil.which("pebble-challtestsrv"):
        raise RuntimeError("pebble is not installed: run scripts/bootstrap (Debian package 'pebble')")
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_ca("pebble TLS test CA")
    cert_pem, key_pem = make_leaf(ca, ["localhost"], ips=("127.0.0.1",))
    (workdir / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    (workdir / "cert.pem").write_bytes(cert_pem)
    (workdir / "key.pem").write_bytes(key_pem)
    os.chmod(workdir / "key.pem", 0o600)
    acme_port, mgmt_port, dns_port, chall_mgmt = free_port(), free_port(), free_port(), free_port()
    (workdir / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}",
        "managementListenAddress": f"127.0.0.1:{mgmt_port}",
        "certificate": str(workdir / "cert.pem"),
        "privateKey": str(workdir / "key.pem"),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    logs = [workdir / "challtestsrv.log", workdir / "pebble.log"]
    procs: list[subprocess.Popen] = []
    try:
        with open(logs[0], "wb") as out:
            procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                 "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{chall_mgmt}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        with open(logs[1], "wb") as out:
            procs.append(subprocess.Popen(
                ["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=workdir))
        directory = f"https://127.0.0.1:{acme_port}/dir"
        _wait_ready(directory, workdir / "ca.pem", procs, logs)
        yield Pebble(directory=directory, ca_file=workdir / "ca.pem", management=f"https://127.0.0.1:{mgmt_port}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
