"""Small stand-ins shared by unit tests."""

from __future__ import annotations

from ops.errors import OpsError
from ops.remote import HostResults


class RecordingS3:
    """A boto3 client wrapper recording deletes in order (everything else passes through)."""

    def __init__(self, inner):
        self.inner = inner
        self.deleted: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def delete_object(self, **kw):
        self.deleted.append(kw["Key"])
        return self.inner.delete_object(**kw)


def sequential_map(fn, hosts) -> HostResults:
    """``Gateway.map`` one host after the other, errors collected per host like the real one."""
    results = HostResults()
    for host in hosts:
        try:
            results.ok[host.name] = fn(host)
        except OpsError as exc:
            exc.host = exc.host or host.name
            results.failed[host.name] = exc
    return results
