"""TLS on the shared sandbox fleet for a test, and back to plain http after it.

The sandbox inventory stays plain http (other suites expect it): a test writes a copy with
``proxy.tls`` under a throwaway name in inventory/ (``--host`` only takes files there) and
``plain_http_again`` removes the certificates and recreates every proxy without 443.
"""

from __future__ import annotations

import secrets

import yaml

from ops.deploy.pipeline import AppEnv
from ops.deploy.switch import ensure_proxy
from ops.inventory import INVENTORY_DIR, Environment
from ops.layout import Layout
from ops.remote import Gateway
from ops.tls import hostfiles

DOMAIN = "app.ops-sandbox.test"


def write_inventory(sandbox_env: Environment, tls: dict, prefix: str = "tls") -> str:
    raw = yaml.safe_load(sandbox_env.path.read_text())
    raw["proxy"] = {**raw["proxy"], "tls": tls}
    name = f"{prefix}-{secrets.token_hex(4)}"
    (INVENTORY_DIR / f"{name}.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return name


def remove_inventory(name: str) -> None:
    (INVENTORY_DIR / f"{name}.yml").unlink(missing_ok=True)


def http_port_of(env: Environment, host: str) -> int:
    return next(lp for lp, cp in env.sandbox.publish[host].items() if cp == env.proxy.port)


def installed_digests(env: Environment) -> dict:
    with Gateway(env) as gw:
        return {h.name: hostfiles.installed_digests(gw, h) for h in env.with_roles("web")}


def tokens_left(env: Environment) -> dict[str, list[str]]:
    with Gateway(env) as gw:
        layout = Layout(env)
        return {h.name: gw.query(h, ("find", hostfiles.token_dir(layout), "-type", "f"), check=False).stdout.split()
                for h in env.with_roles("web")}


def plain_http_again(sandbox_env: Environment) -> None:
    """Every web host: no certificate, the proxy recreated without 443, config without TLS."""
    with Gateway(sandbox_env) as gw:
        app = AppEnv.load(sandbox_env, gw.mask).app_settings()
        layout = Layout(sandbox_env)
        for h in sandbox_env.with_roles("web"):
            gw.run(h, ("rm", "-f", hostfiles.chain_path(layout), hostfiles.key_path(layout)))
            ensure_proxy(gw, h, app)
