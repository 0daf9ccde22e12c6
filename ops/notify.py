"""Telling people: a Slack-compatible webhook and Sentry's release + deploy markers.

- webhook (``notify.webhook_var``: the variable of the operator's env file holding the
  URL, which embeds a token): one JSON ``{"text": ..., "attachments": [...]}`` POST per
  event among ``notify.events``: deploy, rollback, deploy_failed (a deploy or rollback that
  stopped: where and why), backup_failed, backup_stale;
- Sentry (``notify.sentry_org`` + ``sentry_project``, token in ``sentry_token_var``): on a
  deploy or rollback that switched the fleet (never for a failed one), the release
  (``POST /api/0/organizations/{org}/releases/``; an existing one answers 208) and a deploy
  marker for the environment (``.../releases/{version}/deploys/``).

A notification never changes the outcome of what it reports: every failure (no answer,
an HTTP error, a missing variable) becomes one warning line, and never shows the URL or
token (a URL names its variable instead). What goes out is built from non-secret facts
only (environment, version, release id, hosts, actor, a masked error line).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from ops.inventory import Environment
from ops.masking import Masker
from ops.opsenv import operator_value

COLORS = {"deploy": "good", "rollback": "warning", "deploy_failed": "danger", "backup_failed": "danger",
          "backup_stale": "danger"}
TITLES = {"deploy": "deployed", "rollback": "rolled back", "deploy_failed": "deploy FAILED",
          "backup_failed": "backup FAILED", "backup_stale": "backup STALE"}


@dataclass
class Event:
    kind: str                 # one of ops.inventory.NOTIFY_EVENTS
    env: str
    summary: str              # one line for people
    version: str | None = None
    release: str | None = None
    hosts: list[str] = field(default_factory=list)
    actor: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    color: str | None = None  # instead of the kind's (a deploy whose smoke check failed: "danger")

    def webhook_payload(self) -> dict:
        title = f"[{self.env}] {TITLES.get(self.kind, self.kind)}"
        facts = {"environment": self.env, "version": self.version, "release": self.release,
                 "hosts": ", ".join(self.hosts) or None, "by": self.actor, **self.fields}
        return {"text": f"{title}: {self.summary}",
                "attachments": [{"color": self.color or COLORS.get(self.kind, "#888888"), "fallback": self.summary,
                                 "fields": [{"title": k, "value": str(v), "short": len(str(v)) < 40}
                                            for k, v in facts.items() if v]}]}


class _Post:
    """One HTTP POST with a JSON body; returns None or a warning line (never with the URL)."""

    def __init__(self, timeout: float):
        # NOTE: no proxy from the environment: the webhook and Sentry are reached directly,
        # and a proxy variable must not silently route a token elsewhere.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.timeout = timeout

    def __call__(self, url: str, body: dict, *, what: str, headers: dict | None = None,
                 ok: tuple[int, ...] = (200, 201, 202, 204, 208)) -> str | None:
        data = json.dumps(body, separators=(",", ":")).encode()
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "ops-notify",
                                              **(headers or {})})
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{what} not sent: {type(reason).__name__ if not str(reason) else reason}"
        if status not in ok:
            return f"{what} not accepted: HTTP {status}"
        return None


class Notifier:
    """Sends what ``env.notify`` asks for; ``send`` returns warnings, never raises."""

    def __init__(self, env: Environment, masker: Masker | None = None):
        self.env = env
        self.settings = env.notify
        self.mask = masker or Masker()
        self.post = _Post(self.settings.timeout)
        self.sent: list[str] = []  # what went out, for the caller's report ("webhook", "sentry release"...)

    def _secret(self, var: str | None, what: str) -> tuple[str | None, str | None]:
        if not var:
            return None, None
        value = operator_value(self.env, var)
        if not value:
            where = f"{self.env.ops_env_file} nor in the environment" if self.env.ops_env_file else \
                "the environment (no ops_env_file set)"
            return None, f"{what} not sent: {var} is not set in {where}"
        self.mask.add(value)
        return value, None

    def send(self, event: Event) -> list[str]:
        warnings: list[str] = []
        if event.kind in self.settings.events:
            warnings += self._webhook(event)
        if event.kind in ("deploy", "rollback") and event.version:
            warnings += self._sentry(event)
        return [self.mask(w) for w in warnings]

    def _webhook(self, event: Event) -> list[str]:
        url, problem = self._secret(self.settings.webhook_var, "webhook notification")
        if url is None:
            return [problem] if problem else []
        problem = self.post(url, event.webhook_payload(), what=f"webhook notification ({self.settings.webhook_var})")
        if problem is None:
            self.sent.append("webhook")
            return []
        return [problem]

    def _sentry(self, event: Event) -> list[str]:
        s = self.settings
        if not (s.sentry_org and s.sentry_project):
            return []
        token, problem = self._secret(s.sentry_token_var, "Sentry release")
        if token is None:
            return [problem] if problem else []
        auth = {"Authorization": f"Bearer {token}"}
        base = f"{s.sentry_url}/api/0/organizations/{quote(s.sentry_org, safe='')}/releases/"
        problem = self.post(base, {"version": event.version, "projects": [s.sentry_project]},
                            what="Sentry release", headers=auth)
        if problem is not None:
            return [problem]
        self.sent.append("sentry release")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        marker = {"environment": event.env, "name": f"{event.kind} {event.release or event.version}",
                  "dateStarted": now, "dateFinished": now}
        problem = self.post(f"{base}{quote(event.version, safe='')}/deploys/", marker,
                            what="Sentry deploy marker", headers=auth)
        if problem is not None:
            return [problem]
        self.sent.append("sentry deploy")
        return []


def notify(env: Environment, event: Event, masker: Masker | None = None) -> list[str]:
    """Send ``event`` where the inventory says; the warnings to show (empty when all went out)."""
    return Notifier(env, masker).send(event)


def backup_failed(env: Environment, kind: str, error: BaseException, masker: Masker | None = None) -> list[str]:
    """A backup of ``kind`` failed: its error's first line (masked) goes out."""
    mask = masker or Masker()
    line = (str(error).splitlines() or [type(error).__name__])[0]
    return notify(env, Event("backup_failed", env.name, f"{kind} backup failed: {mask(line)[:300]}",
                             fields={"kind": kind}), mask)


@contextlib.contextmanager
def alert_on_failure(env: Environment, kind: str, warn: Callable[[str], None], masker: Masker | None = None):
    """Around a backup: when it raises (Ctrl-C aside), ``backup_failed`` goes out, then the error goes on."""
    try:
        yield
    except Exception as exc:
        for warning in backup_failed(env, kind, exc, masker):
            warn(warning)
        raise


def backup_stale(env: Environment, stale: list[tuple[str, str]]) -> list[str]:
    """``stale``: (kind, the freshness line of ``backup.check``) for each kind found stale or missing."""
    if not stale:
        return []
    return notify(env, Event("backup_stale", env.name, "; ".join(line for _, line in stale),
                             fields={"kinds": ", ".join(kind for kind, _ in stale)}))


__all__ = ["Event", "Notifier", "alert_on_failure", "backup_failed", "backup_stale", "notify"]
