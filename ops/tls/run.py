"""``tls.issue`` and ``tls.renew``: plan first, then apply that plan in the Operation envelope.

issue: get a certificate now (files: the operator's pair, checked here first; acme: a new
order) and install it on the selected web hosts.
renew: the same, but only when a host serves no certificate, one that lacks a domain, or
one expiring within ``proxy.tls.renew_before_days`` (``force``: always). Files mode cannot
renew by itself: it re-installs the files if they changed and warns when they expire soon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ops.deploy.pipeline import AppEnv
from ops.deploy.switch import ensure_network, ensure_proxy
from ops.errors import ConfigError
from ops.inventory import Host, TlsSettings
from ops.layout import Layout
from ops.operation import Operation, Plan
from ops.remote import Gateway
from ops.tls import certs, hostfiles
from ops.tls.acme_order import Order
from ops.tls.install import install_on_host
from ops.tls.status import CertificateStatus, certificate_status

Say = Callable[[str], None]


@dataclass
class TlsPlan:
    plan: Plan
    hosts: list[Host]
    # Empty: nothing to do (renew found every host current).
    due: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, CertificateStatus] = field(default_factory=dict)
    files: tuple[bytes, bytes] | None = None

    @property
    def needed(self) -> bool:
        return bool(self.due)


def settings(gw: Gateway) -> TlsSettings:
    tls = gw.env.proxy.tls
    if tls is None:
        raise ConfigError(f"TLS is off in {gw.env.path.name} (no proxy.tls)",
                          hint="add proxy.tls (domains, certificate: files|acme); see inventory/prod.yml")
    return tls


def web_hosts(gw: Gateway, hosts: list[Host]) -> list[Host]:
    chosen = [h for h in hosts if "web" in h.roles]
    if not chosen:
        raise ConfigError("no web host selected", hint=f"pass --host {gw.env.name} or {gw.env.name}:<a web host>")
    return chosen


def read_files(tls: TlsSettings) -> tuple[bytes, bytes, certs.CertInfo]:
    """The operator's pair, checked (key matches, current, names every domain) before any upload."""
    try:
        chain, key = tls.cert_file.read_bytes(), tls.key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}",
                          hint="fix proxy.tls.cert_file / key_file") from None
    meta = certs.check_pair(chain, key, domains=tls.domains, now=certs.now_utc(),
                            cert_where=str(tls.cert_file), key_where=str(tls.key_file))
    return chain, key, meta


def statuses(gw: Gateway, hosts: list[Host]) -> dict[str, CertificateStatus]:
    return {h.name: certificate_status(gw, h) for h in hosts}


def due_reason(status: CertificateStatus, tls: TlsSettings) -> str:
    """Why this host needs a new certificate, or "" when it does not."""
    if not status.tls_on:
        return f"serves no certificate ({status.detail})"
    if status.detail:
        return status.detail
    days = status.days_left()
    if days is not None and days < tls.renew_before_days:
        return f"expires in {days:.1f} days (renew_before_days {tls.renew_before_days})"
    return ""


def plan(gw: Gateway, hosts: list[Host], *, renew: bool, force: bool = False) -> TlsPlan:
    tls = settings(gw)
    chosen = web_hosts(gw, hosts)
    layout = Layout(gw.env)
    action = "tls.renew" if renew else "tls.issue"
    result = TlsPlan(Plan(action, gw.env.name, ""), chosen)
    p = result.plan
    if tls.certificate == "files":
        chain, key, meta = read_files(tls)
        result.files = (chain, key)
        p.lines.append(f"certificate from {tls.cert_file} (key {tls.key_file}): {', '.join(meta.names)}, "
                       f"valid until {meta.not_after:%Y-%m-%d %H:%M}Z")
        if meta.days_left(certs.now_utc()) < tls.renew_before_days:
            p.warnings.append(f"{tls.cert_file} expires in {meta.days_left(certs.now_utc()):.0f} days: "
                              "replace it (files mode does not renew by itself)")
    else:
        p.lines.append(f"ACME order (HTTP-01) for {', '.join(tls.domains)} at {tls.directory}, "
                       f"account key {tls.account_key}")
    if renew:
        result.statuses = statuses(gw, chosen)
        for name, st in result.statuses.items():
            why = "forced (--force)" if force else due_reason(st, tls)
            if why:
                result.due[name] = why
            p.lines.append(f"{name}: " + (f"renew: {why}" if why else
                                          f"current until {st.not_after:%Y-%m-%d %H:%M}Z "
                                          f"({st.days_left():.0f} days left)"))
        if tls.certificate == "files" and not force:
            # The operator may have replaced the files: an install compares and is a no-op otherwise.
            result.due = {h.name: result.due.get(h.name, "re-install if cert_file/key_file changed")
                          for h in chosen}
    else:
        result.due = {h.name: "issue" for h in chosen}
    if not result.due:
        p.summary = f"nothing to renew on {len(chosen)} web host(s): every certificate is current"
        return result
    p.summary = (f"{'renew' if renew else 'issue'} the certificate for {', '.join(tls.domains)} on "
                 f"{', '.join(result.due)}")
    for h in chosen:
        steps = []
        if tls.certificate == "acme":
            steps.append(f"serve the HTTP-01 token(s) from {hostfiles.token_dir(layout)} (removed afterwards)")
        if h.name in result.due:
            steps += [f"upload {hostfiles.CHAIN} (0644) and {hostfiles.KEY} (0600) to {hostfiles.tls_dir(layout)} "
                      "unless the same pair is installed",
                      "render the site config with TLS, nginx -t, graceful reload (the old pair is put back "
                      "if nginx refuses)"]
        p.steps[h.name] = steps
    return result


def apply(gw: Gateway, tp: TlsPlan, *, say: Say) -> dict[str, bool]:
    """Run ``tp`` (not a recomputed plan). Returns host -> whether it changed."""
    tls = settings(gw)
    if not tp.needed:
        return {}
    app = AppEnv.load(gw.env, gw.mask).app_settings()
    targets = [h for h in tp.hosts if h.name in tp.due]
    # ACME tokens go to every web host: the CA may reach any of them.
    everywhere = gw.env.with_roles("web") if tls.certificate == "acme" else targets
    with Operation(gw, tp.plan.action, everywhere, say=say, detail=tp.plan.summary) as op:
        if tls.certificate == "acme":
            # The challenge location must be live before the CA asks (first order, new host).
            # NOTE: one host after the other: the first time, a proxy may be recreated (new
            # mounts, 443 published) and the site must not blink everywhere at once.
            for host in everywhere:
                ensure_network(gw, host)
                ensure_proxy(gw, host, app)
            issued = Order(gw, tls, everywhere, say).run()
            chain, key = issued.chain_pem, issued.key_pem
        else:
            chain, key = tp.files
        # One host after the other, like a deploy's batches: a first install recreates the proxy.
        changed = {h.name: install_on_host(gw, h, chain, key, app) for h in targets}
        meta = certs.info(certs.load_chain(chain, "the certificate")[0])
        op.outcome = (f"certificate {meta.serial} until {meta.not_after:%Y-%m-%d}Z on "
                      f"{', '.join(h for h, c in changed.items() if c) or 'no host (already installed)'}")
    for name, was_changed in changed.items():
        say(f"{name}: {'installed, nginx reloaded' if was_changed else 'same certificate already installed'}")
    return changed
