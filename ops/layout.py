"""Where the tool keeps its state on each host, under ``app_dir``, and its names.

    {app_dir}/lock/                 exists = an operation holds the environment (mkdir is atomic)
    {app_dir}/lock/holder.json      who, when, what
    {app_dir}/releases/<id>/app.env the env file that went with that release (0600)
    {app_dir}/history.jsonl         one line per release event on this host (append-only)
    {app_dir}/audit.log             one JSON line per deploy, rollback and lock action
    {app_dir}/proxy/conf.d/         nginx site config, mounted into the proxy container
    {app_dir}/accessories/<n>.env   env file of an accessory (0600)
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ops.inventory import Environment

RELEASE_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Layout:
    env: Environment

    def path(self, *parts: str) -> str:
        return posixpath.join(self.env.app_dir, *parts)

    @property
    def lock_dir(self) -> str:
        return self.path("lock")

    @property
    def history(self) -> str:
        return self.path("history.jsonl")

    @property
    def audit_log(self) -> str:
        return self.path("audit.log")

    @property
    def proxy_conf_dir(self) -> str:
        return self.path("proxy", "conf.d")

    def release_dir(self, release_id: str) -> str:
        if not RELEASE_ID_RE.match(release_id):
            raise ValueError(f"not a release id: {release_id!r}")
        return self.path("releases", release_id)

    def release_env(self, release_id: str) -> str:
        return posixpath.join(self.release_dir(release_id), "app.env")

    # -- container and network names on the hosts ------------------------
    @property
    def network(self) -> str:
        return f"{self.env.app}-net"

    @property
    def proxy_container(self) -> str:
        return f"{self.env.app}-proxy"

    @property
    def web_service(self) -> str:
        """The name nginx proxies to: the serving release's container answers to it."""
        return f"{self.env.app}-web"

    def web_container(self, release_id: str) -> str:
        # Docker names allow [a-zA-Z0-9_.-]; release ids are built to fit.
        return f"{self.env.app}-web-{release_id.lower()}"

    @property
    def migrate_container(self) -> str:
        return f"{self.env.app}-migrate"
