"""Put a certificate chain + key on a web host and make its proxy serve it.

Only when they differ from what is installed (sha256 of both): then the key is written
0600 and the chain 0644 (each atomically, through SFTP: never in argv or a log), the
site config is re-rendered (TLS on), ``nginx -t`` runs and nginx reloads gracefully.
If nginx refuses, the previous pair (or none) is put back before the error is raised.
"""

from __future__ import annotations

from ops.commands import shell
from ops.deploy.switch import AppSettings, ensure_proxy
from ops.errors import OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway
from ops.tls import certs, hostfiles


def install_on_host(gw: Gateway, host: Host, chain_pem: bytes, key_pem: bytes, app: AppSettings) -> bool:
    """True when something changed (uploaded + reloaded); False: the same pair was there already."""
    want = (certs.digest(chain_pem), certs.digest(key_pem))
    have = hostfiles.installed_digests(gw, host)
    if have == want:
        return False
    layout = Layout(gw.env)
    chain, key = hostfiles.chain_path(layout), hostfiles.key_path(layout)
    hostfiles.prepare_dirs(gw, host)
    if have:
        gw.run(host, shell("cp -p {c} {c}.prev && cp -p {k} {k}.prev", c=chain, k=key))
    gw.put(host, key_pem, key, mode=0o600)
    gw.put(host, chain_pem, chain, mode=0o644)
    try:
        ensure_proxy(gw, host, app, reload=True)
    except OpsError as exc:
        undo = (shell("mv -f {c}.prev {c} && mv -f {k}.prev {k}", c=chain, k=key) if have
                else shell("rm -f {c} {k}", c=chain, k=key))
        res = gw.run(host, undo, check=False)
        if not res.ok:
            exc.also(f"the previous certificate could not be put back on {host.name}: {res.stderr.strip()}")
        raise
    if have:
        gw.run(host, shell("rm -f {c}.prev {k}.prev", c=chain, k=key))
    return True
