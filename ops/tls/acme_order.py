"""Obtain a certificate over ACME (RFC 8555) with HTTP-01 through the proxies.

The CA fetches ``http://<domain>/.well-known/acme-challenge/<token>``; whichever web host
DNS sends it to must answer, so the token goes to EVERY web host's challenge directory
(served by nginx from ``CHALLENGE_ROOT``, see ``ops.commands.nginx``), is checked there
through each host's own proxy before the CA is asked (a failed validation counts against
Let's Encrypt's rate limits), and is removed afterwards whatever happened.

The protocol is the ``acme`` library (certbot's). The account key stays on the operator's
machine (``proxy.tls.account_key``, made 0600 when missing); the certificate's key is
new for every order and only leaves this process through ``ops.tls.install``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import josepy as jose
import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ops.errors import ConfigError, HostError, OpsError
from ops.inventory import Host, TlsSettings
from ops.layout import Layout
from ops.remote import Gateway
from ops.tls import certs, hostfiles

Say = Callable[[str], None]
ORDER_TIMEOUT = 120.0
USER_AGENT = "ops-tls (acme-python)"


class AcmeFailed(OpsError):
    """The ACME server refused, could not validate, or could not be reached."""


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes
    key_pem: bytes
    info: certs.CertInfo


def load_account_key(path: Path) -> jose.JWKRSA:
    """The account's key; a new RSA-2048 key is written 0600 (never readable by others) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"ACME account key {path} is readable by others",
                          hint=f"chmod 600 {path}: it controls the account that orders your certificates")
    key = certs.load_key(path.read_bytes(), str(path))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"ACME account key {path} is not an RSA key", hint="remove it to have a new one made")
    return jose.JWKRSA(key=key)


def _why(exc: BaseException) -> str:
    if isinstance(exc, acme_errors.ValidationError):
        problems = []
        for authz in exc.failed_authzrs:
            for ch in authz.body.challenges:
                if ch.error is not None:
                    problems.append(f"{authz.body.identifier.value}: {ch.error.detail or ch.error.typ}")
        return "validation failed: " + ("; ".join(problems) or "no detail")
    if isinstance(exc, messages.Error):
        return exc.detail or exc.typ or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Order:
    """One certificate order for ``tls.domains``; tokens go to ``web_hosts``."""

    def __init__(self, gw: Gateway, tls: TlsSettings, web_hosts: list[Host], say: Say):
        if tls.account_key is None:
            raise ConfigError("proxy.tls.account_key is not set", hint="name a file on this machine for the ACME account key")
        self.gw, self.tls, self.hosts, self.say = gw, tls, web_hosts, say
        self.layout = Layout(gw.env)
        self.tokens: list[str] = []

    def run(self) -> Issued:
        try:
            return self._run()
        except (acme_errors.Error, messages.Error, requests.RequestException, jose.errors.Error) as exc:
            raise AcmeFailed(f"ACME order at {self.tls.directory} failed: {_why(exc)}",
                             hint="the proxies keep serving their current certificate; see RUNBOOK.md "
                                  "'Certificates' (renewal fails)") from None
        finally:
            self._remove_tokens()

    def _run(self) -> Issued:
        jwk = load_account_key(self.tls.account_key)
        net = client.ClientNetwork(jwk, user_agent=USER_AGENT, timeout=30,
                                   verify_ssl=str(self.tls.ca_file) if self.tls.ca_file else True)
        acme = client.ClientV2(client.ClientV2.get_directory(self.tls.directory, net), net)
        registration = (messages.NewRegistration.from_data(email=self.tls.email, terms_of_service_agreed=True)
                        if self.tls.email else messages.NewRegistration(terms_of_service_agreed=True))
        try:
            acme.new_account(registration)
            self.say("ACME account registered")
        except acme_errors.ConflictError as known:
            acme.query_registration(messages.RegistrationResource(uri=known.location, body=messages.Registration()))
        key_pem = certs.new_key_pem()
        order = acme.new_order(crypto_util.make_csr(key_pem, list(self.tls.domains)))
        answers = []
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # a still-valid authorization from an earlier order
            challb = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if challb is None:
                raise AcmeFailed(f"the ACME server offers no http-01 challenge for {authz.body.identifier.value}",
                                 hint="HTTP-01 cannot prove wildcard names: list plain host names in proxy.tls.domains")
            response, validation = challb.response_and_validation(jwk)
            self._publish(challb.chall.encode("token"), validation, authz.body.identifier.value)
            answers.append((challb, response))
        for challb, response in answers:
            acme.answer_challenge(challb, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
        order = acme.poll_and_finalize(order, deadline)
        chain_pem = order.fullchain_pem.encode()
        meta = certs.check_pair(chain_pem, key_pem, domains=self.tls.domains, now=certs.now_utc(),
                                cert_where="the issued certificate", key_where="the new key")
        self.say(f"issued: {', '.join(meta.names)}, valid until {meta.not_after:%Y-%m-%d %H:%M}Z")
        return Issued(chain_pem, key_pem, meta)

    def _publish(self, token: str, validation: str, domain: str) -> None:
        """The token on every web host, and answered by each host's own proxy before the CA asks."""
        path = f"{hostfiles.token_dir(self.layout)}/{token}"
        self.tokens.append(token)

        def put(host: Host) -> None:
            hostfiles.prepare_dirs(self.gw, host)
            self.gw.put(host, validation.encode(), path, mode=0o644)
            url = f"http://127.0.0.1:{self.gw.env.proxy.port}/.well-known/acme-challenge/{token}"
            for attempt in range(10):
                res = self.gw.query(host, ("curl", "-sS", "-m", "5", "-H", f"Host: {domain}", url), check=False)
                if res.ok and res.stdout == validation:
                    return
                time.sleep(0.2 * (attempt + 1))
            raise HostError(f"the proxy on {host.name} does not serve the ACME token at {url} "
                            f"({(res.stdout or res.stderr).strip()[:80]!r})", host=host.name,
                            hint="is the proxy running with the challenge location (inv deploy, or inv tls.issue "
                                 "after the proxy is up)?")

        self.gw.map(put, self.hosts).raise_if_failed("publish the ACME challenge")

    def _remove_tokens(self) -> None:
        if not self.tokens:
            return
        paths = [f"{hostfiles.token_dir(self.layout)}/{t}" for t in self.tokens]
        self.gw.map(lambda h: self.gw.run(h, ("rm", "-f", *paths), check=False), self.hosts)
