"""The inventory's ``pitr:`` section: continuous WAL archiving and physical backups with pgBackRest.

    pitr:
      stanza: athlete-platform        # default: the app name
      archive_timeout: 60             # seconds: the RPO bound of an idle database
      process_max: 2
      full_every_days: 7              # inv backup.db: full when the newest full is older, else incr
      retention_full: 4               # full backups pgBackRest's expire keeps (WAL follows them)
      default_kind: physical        # what `inv backup.db` takes and `restore --at` prefers (--logical/--physical)
      encryption_key_var: BACKUP_PASSPHRASE   # default: backup.encryption_key_var
      repos:                          # repo1, repo2...: pgBackRest multi-repo, every backup and WAL in each
        - bucket: acme-backups        # default: s3.bucket
          path: /athlete-platform/pgbackrest   # default: /<s3.prefix>pgbackrest
          region: eu-central-1        # default: s3.region
          endpoint: s3.eu-central-1.amazonaws.com
          port: 443
          uri_style: host             # or path
          ca_file: null               # a PEM CA file to verify the endpoint with (the sandbox's own CA)
          key_var: AWS_ACCESS_KEY_ID  # names of operator env variables, never values
          secret_var: AWS_SECRET_ACCESS_KEY

Kept apart from ``ops/inventory.py`` so the pgBackRest knobs live in one place; the
validator passed in is ``inventory._Validator`` (duck-typed: ``section``, ``string``,
``number``, ``path_value``, ``problem``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKUP_KINDS = ("physical", "logical")
URI_STYLES = ("host", "path")
VAR_RE = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
HOST_RE = re.compile(r"^[A-Za-z0-9.-]+\Z")
STANZA_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
REPO_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*\Z")
MAX_REPOS = 4


@dataclass(frozen=True)
class PitrRepo:
    """One pgBackRest repository on S3 (``repoN-*`` options)."""

    bucket: str
    path: str
    region: str
    endpoint: str
    port: int = 443
    uri_style: str = "host"
    # A CA file on the operator's machine, copied next to the accessory (verification stays on).
    ca_file: Path | None = None
    key_var: str = "AWS_ACCESS_KEY_ID"
    secret_var: str = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class PitrSettings:
    stanza: str
    repos: tuple[PitrRepo, ...]
    archive_timeout: int = 60
    process_max: int = 2
    full_every_days: float = 7.0
    retention_full: int = 2
    default_kind: str = "physical"
    encryption_key_var: str | None = None
    # Seconds pgBackRest waits on one S3 request in checks (a TLS/endpoint mistake otherwise
    # shows only after its default 60 s of retries).
    check_io_timeout: int = 10


def validate(v: Any, raw: dict, *, app: str, s3: Any, backup_key_var: str | None) -> PitrSettings | None:
    """``pitr:`` of an inventory, or None when absent; problems go to ``v`` (one line each)."""
    if raw.get("pitr") is None:
        return None
    sec = v.section(raw, "pitr", {"stanza", "archive_timeout", "process_max", "full_every_days", "retention_full",
                                  "default_kind", "encryption_key_var", "repos", "check_io_timeout"})
    stanza = v.string(sec, "stanza", "pitr.stanza", app or "main", pattern=STANZA_RE,
                      what="a lowercase name like 'athlete-platform'")
    default_kind = sec.get("default_kind", "physical")
    if default_kind not in BACKUP_KINDS:
        v.problem("pitr.default_kind", f"{default_kind!r} is not a backup kind", "use physical or logical")
        default_kind = "physical"
    key_var = v.string(sec, "encryption_key_var", "pitr.encryption_key_var", backup_key_var, pattern=VAR_RE,
                       what="a variable name like BACKUP_PASSPHRASE")
    if key_var is None:
        v.problem("pitr.encryption_key_var", "no passphrase variable (and backup.encryption_key_var is unset)",
                  "name the ops env file variable holding the repository passphrase, e.g. BACKUP_PASSPHRASE")
    raw_repos = sec.get("repos") or [{}]
    if not isinstance(raw_repos, list) or not 1 <= len(raw_repos) <= MAX_REPOS:
        v.problem("pitr.repos", f"must be a list of 1-{MAX_REPOS} repositories, got {raw_repos!r}",
                  "write e.g. 'repos: [{bucket: ..., endpoint: ...}]'")
        raw_repos = [{}]
    repos = tuple(r for i, item in enumerate(raw_repos, 1) if (r := _repo(v, item, i, s3)) is not None)
    return PitrSettings(
        stanza=stanza, repos=repos, default_kind=default_kind, encryption_key_var=key_var,
        archive_timeout=v.number(sec, "archive_timeout", "pitr.archive_timeout", 60, lo=1, hi=3600),
        process_max=v.number(sec, "process_max", "pitr.process_max", 2, lo=1, hi=32),
        full_every_days=v.number(sec, "full_every_days", "pitr.full_every_days", 7.0, lo=0.01, hi=366,
                                 integer=False),
        retention_full=v.number(sec, "retention_full", "pitr.retention_full", 2, lo=1, hi=9999),
        check_io_timeout=v.number(sec, "check_io_timeout", "pitr.check_io_timeout", 10, lo=1, hi=600))


def _repo(v: Any, item: Any, n: int, s3: Any) -> PitrRepo | None:
    where = f"pitr.repos[{n}]"
    if not isinstance(item, dict):
        v.problem(where, "must be a mapping", "give it bucket:, endpoint:, region:")
        return None
    v.unknown_keys(item, {"bucket", "path", "region", "endpoint", "port", "uri_style", "ca_file", "key_var",
                          "secret_var"}, where)
    bucket = v.string(item, "bucket", f"{where}.bucket", s3.bucket if s3 else None, required=s3 is None,
                      pattern=BUCKET_RE, what="an S3 bucket name")
    region = v.string(item, "region", f"{where}.region", s3.region if s3 else "us-east-1")
    endpoint = v.string(item, "endpoint", f"{where}.endpoint", f"s3.{region}.amazonaws.com", pattern=HOST_RE,
                        what="a host name or address without scheme (pgBackRest speaks https), "
                             "e.g. s3.eu-central-1.amazonaws.com")
    prefix = (s3.prefix if s3 else "").strip("/")
    path = v.string(item, "path", f"{where}.path", "/" + "/".join(p for p in (prefix, "pgbackrest") if p),
                    pattern=REPO_PATH_RE, what="an absolute path in the bucket like /app/pgbackrest")
    uri_style = item.get("uri_style", "path" if (s3 and s3.path_style) else "host")
    if uri_style not in URI_STYLES:
        v.problem(f"{where}.uri_style", f"{uri_style!r} is not a choice", "use host or path")
        uri_style = "host"
    ca_file = v.path_value(item, "ca_file", f"{where}.ca_file")
    return PitrRepo(bucket=bucket or "", path=path, region=region, endpoint=endpoint or "",
                    port=v.number(item, "port", f"{where}.port", 443, lo=1, hi=65535), uri_style=uri_style,
                    ca_file=ca_file,
                    key_var=v.string(item, "key_var", f"{where}.key_var", "AWS_ACCESS_KEY_ID", pattern=VAR_RE,
                                     what="a variable name"),
                    secret_var=v.string(item, "secret_var", f"{where}.secret_var", "AWS_SECRET_ACCESS_KEY",
                                        pattern=VAR_RE, what="a variable name"))
