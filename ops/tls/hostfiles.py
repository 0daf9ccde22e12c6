"""Where TLS lives on a web host (under ``app_dir``), and what is installed there.

    {app_dir}/proxy/tls/              0700, mounted read-only at /etc/nginx/tls
        fullchain.pem                 0644, the chain nginx serves
        privkey.pem                   0600, its key (never in argv, logs or the plan's text)
    {app_dir}/proxy/acme/             mounted read-only at /var/www/acme
        .well-known/acme-challenge/   HTTP-01 tokens, only while an order runs
"""

from __future__ import annotations

import posixpath

from ops.commands import shell
from ops.commands.nginx import CHALLENGE_PREFIX, CHALLENGE_ROOT, TLS_DIR
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway

CHAIN = "fullchain.pem"
KEY = "privkey.pem"


def tls_dir(layout: Layout) -> str:
    return layout.path("proxy", "tls")


def challenge_root(layout: Layout) -> str:
    return layout.path("proxy", "acme")


def token_dir(layout: Layout) -> str:
    return posixpath.join(challenge_root(layout), CHALLENGE_PREFIX.strip("/"))


def chain_path(layout: Layout) -> str:
    return posixpath.join(tls_dir(layout), CHAIN)


def key_path(layout: Layout) -> str:
    return posixpath.join(tls_dir(layout), KEY)


def mounts(layout: Layout) -> list[tuple[str, str, str]]:
    """(host dir, container dir, "ro") for the proxy container."""
    return [(challenge_root(layout), CHALLENGE_ROOT, "ro"), (tls_dir(layout), TLS_DIR, "ro")]


def prepare_dirs(gw: Gateway, host: Host) -> None:
    """Made by the SSH user before docker mounts them (else dockerd makes them, owned by root).
    The token directory must be readable by nginx's workers (www-data); the key's is not."""
    layout = Layout(gw.env)
    gw.run(host, shell("mkdir -p {tokens} && mkdir -p -m 0700 {tls} && chmod 0700 {tls}",
                       tokens=token_dir(layout), tls=tls_dir(layout)))


def installed_digests(gw: Gateway, host: Host) -> tuple[str, str] | None:
    """sha256 of the installed chain and key, or None when either is missing or empty."""
    layout = Layout(gw.env)
    res = gw.query(host, shell("test -s {c} && test -s {k} && sha256sum {c} {k}",
                               c=chain_path(layout), k=key_path(layout)), check=False)
    sums = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return (sums[0], sums[1]) if res.ok and len(sums) == 2 else None


def has_certificate(gw: Gateway, host: Host) -> bool:
    return installed_digests(gw, host) is not None


def installed_chain(gw: Gateway, host: Host) -> bytes | None:
    res = gw.query(host, ("cat", chain_path(Layout(gw.env))), check=False)
    return res.stdout.encode() if res.ok and res.stdout.strip() else None
