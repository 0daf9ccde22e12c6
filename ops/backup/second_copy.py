"""A second copy of every logical and uploads backup (``s3.copy``): another bucket, endpoint or region.

After a backup's manifest is written to the primary target, ``replicate`` copies its data object,
then the manifest (the same bytes: the same HMAC), under the same keys:

- same endpoint and the same credential variables: a server-side copy (S3 ``CopyObject`` /
  ``UploadPartCopy``: no byte crosses the operator's machine); its size is checked after;
- otherwise the object is streamed from the primary into a multipart upload to the copy with the
  usual bounded memory (``stream_upload.upload_stream``: two parts at most), hashed on the way, and
  refused (deleted) unless its SHA-256 is the manifest's.

A copy that fails leaves the primary backup as it was (good); the task says so in a warning and
``backup.check`` reports the divergence until ``inv backup.copy`` (``sync``) or the next backup's
copy of it puts the copy in step. Data is written before the manifest in the copy too: an
interrupted copy is an orphan there, never a manifest without data.

``locate`` tells, per backup id, where it exists: both, primary only, copy only, or differing
(size / SHA-256, or a copy manifest that fails authentication).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from ops.backup import authenticity, catalog
from ops.backup.catalog import Entry, Listing
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest, manifest_key
from ops.backup.stream_upload import MiB, download_object, part_size_for, upload_stream
from ops.errors import ConfigError, OpsError
from ops.progress import counting_reader

SOURCES = ("primary", "copy")
# Server-side copies of big objects go in parts of this size (no memory involved: S3 copies them).
COPY_PART = 64 * MiB


class CopyFailed(OpsError):
    """The second copy of a backup could not be written; the primary backup is intact."""


@dataclass(frozen=True)
class Copied:
    backup: str
    how: str  # "server-side copy" | "streamed"
    seconds: float
    bucket: str

    def line(self) -> str:
        return f"{self.backup} copied to s3://{self.bucket} ({self.how}, {self.seconds:.1f}s)"


def server_side(ctx: BackupContext) -> bool:
    """Whether the copy target can read the primary's objects itself: same endpoint (AWS when both are
    unset) and the same credentials."""
    primary, copy = ctx.env.s3, ctx.env.s3.copy
    return (copy is not None and primary.endpoint_url == copy.endpoint_url
            and (primary.key_var, primary.secret_var) == (copy.key_var, copy.secret_var))


def describe(ctx: BackupContext) -> str:
    """One line for plans: where the copy goes and how."""
    copy = ctx.env.s3.copy
    if copy is None:
        return "no second copy (s3.copy is not set)"
    where = copy.endpoint_url or f"AWS {copy.region}"
    return (f"then copy data + manifest to s3://{copy.bucket} at {where} "
            f"({'server-side copy' if server_side(ctx) else 'streamed, bounded memory'})")


def replicate(ctx: BackupContext, m: Manifest) -> Copied | None:
    """Copy backup ``m`` (data, then manifest) from the primary to the copy target; None without one.

    CopyFailed when it could not be done (the copy's data object removed again, best effort)."""
    cc = ctx.copy_context()
    if cc is None:
        return None
    t0 = time.monotonic()
    how = "server-side copy" if server_side(ctx) else "streamed"
    body = m.to_json()
    try:
        if how == "server-side copy":
            _server_side_copy(ctx, cc, m)
        else:
            _streamed_copy(ctx, cc, m)
        cc.client.put_object(Bucket=cc.bucket, Key=manifest_key(m.object_key), Body=body,
                             ContentType="application/json", **_sse(cc))
    except (BotoCoreError, ClientError, OpsError) as exc:
        with contextlib.suppress(BotoCoreError, ClientError):
            cc.client.delete_object(Bucket=cc.bucket, Key=m.object_key)
        reason = exc.message if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"
        raise CopyFailed(f"second copy of {m.id} to s3://{cc.bucket} failed: {ctx.masker(reason)}",
                         hint=f"the backup itself is good in s3://{ctx.bucket}; fix the copy target, then "
                              f"inv backup.copy --host {ctx.env.name}") from None
    return Copied(m.id, how, time.monotonic() - t0, cc.bucket)


def replicate_or_warn(ctx: BackupContext, m: Manifest) -> Copied | None:
    """``replicate``; a failure becomes a warning on ``ctx`` (the primary backup stays good)."""
    try:
        done = replicate(ctx, m)
        if done is not None:
            ctx.copied.append(done)
        return done
    except CopyFailed as exc:
        ctx.warn(f"{exc.message} — {exc.hint}")
        return None


def _sse(cc: BackupContext) -> dict:
    return {"ServerSideEncryption": cc.env.s3.sse} if cc.env.s3.sse else {}


def _server_side_copy(ctx: BackupContext, cc: BackupContext, m: Manifest) -> None:
    # NOTE: boto3's managed copy switches to UploadPartCopy above the threshold (S3's single
    # CopyObject stops at 5 GiB); the parts are copied by S3, not read here.
    config = TransferConfig(multipart_threshold=COPY_PART, multipart_chunksize=COPY_PART, max_concurrency=4)
    cc.client.copy({"Bucket": ctx.bucket, "Key": m.object_key}, cc.bucket, m.object_key,
                   ExtraArgs=_sse(cc) or None, SourceClient=ctx.client, Config=config)
    size = cc.client.head_object(Bucket=cc.bucket, Key=m.object_key)["ContentLength"]
    if size != m.size:
        raise OpsError(f"the copied object holds {size} bytes, the manifest says {m.size}")


def _streamed_copy(ctx: BackupContext, cc: BackupContext, m: Manifest) -> None:
    body, size, _ = download_object(ctx.client, ctx.bucket, m.object_key)
    try:
        if size != m.size:
            raise OpsError(f"the primary object holds {size} bytes, the manifest says {m.size}")
        with ctx.progress.transfer(f"copy {m.id} -> s3 {cc.bucket}", total=size) as moved:
            result = upload_stream(cc.client, cc.bucket, m.object_key, counting_reader(body, moved),
                                   part_size=part_size_for(size), expected_size=size, sse=cc.env.s3.sse)
    finally:
        body.close()
    if result.sha256 != m.sha256 or result.size != m.size:
        raise OpsError(f"the bytes copied ({result.size}, sha256 {result.sha256[:16]}...) are not the manifest's "
                       f"({m.size}, {m.sha256[:16]}...)")


# ---------------------------------------------------------------- where each backup exists


@dataclass(frozen=True)
class Located:
    """One backup id and where it exists."""

    id: str
    primary: Entry | None
    copy: Entry | None
    problem: str | None = None  # set when both exist but do not agree

    @property
    def entry(self) -> Entry:
        return self.primary or self.copy

    @property
    def where(self) -> str:
        if self.problem:
            return "DIFFERS"
        if self.primary and self.copy:
            return "both"
        return "primary only" if self.primary else "copy only"

    @property
    def diverges(self) -> bool:
        return self.where != "both"

    def line(self) -> str:
        e = self.entry
        what = {"primary only": "missing from the copy", "copy only": "missing from the primary",
                "DIFFERS": f"differs between primary and copy: {self.problem}"}[self.where]
        return f"{e.kind} backup {self.id} {what}"


def locate(primary: Listing, copy: Listing | None, key: bytes | None = None) -> list[Located]:
    """Every good backup of either listing with where it exists, newest first.

    ``key`` (the manifest key, when backups are authenticated): a copy whose manifest fails its HMAC
    while the primary's passes counts as differing."""
    by_id: dict[str, list[Entry | None]] = {}
    for e in primary:
        by_id.setdefault(e.id, [None, None])[0] = e
    for e in copy or []:
        by_id.setdefault(e.id, [None, None])[1] = e
    found = []
    for backup_id, (p, c) in by_id.items():
        found.append(Located(backup_id, p, c, _disagreement(p, c, key) if p and c else None))
    found.sort(key=lambda loc: (loc.entry.finished_at, loc.entry.started_at, loc.id), reverse=True)
    return found


def _disagreement(p: Entry, c: Entry, key: bytes | None) -> str | None:
    mp, mc = p.manifest, c.manifest
    if (mp.size, mp.sha256) != (mc.size, mc.sha256):
        return (f"primary {mp.size} bytes sha256 {mp.sha256[:12]}, copy {mc.size} bytes sha256 {mc.sha256[:12]}")
    if p.size != c.size:
        return f"primary object {p.size} bytes, copy object {c.size} bytes"
    if key is not None:
        states = authenticity.status(mp, key), authenticity.status(mc, key)
        if states[0] != states[1]:
            return f"manifest authentication: primary {states[0]}, copy {states[1]}"
    return None


def listings(ctx: BackupContext, kind: str | None = None) -> tuple[Listing, Listing | None, list[str]]:
    """(primary listing, copy listing or None, warnings): the copy unreachable is a warning here, never
    the end of a listing (the primary is what backups are read from)."""
    primary = catalog.list_backups(ctx.env, ctx.client, kind=kind)
    cc = ctx.copy_context()
    if cc is None:
        return primary, None, []
    try:
        return primary, catalog.list_backups(cc.env, cc.client, kind=kind), []
    except OpsError as exc:
        return primary, None, [f"the second copy (s3://{cc.bucket}) could not be listed: {exc.message}"]


# ---------------------------------------------------------------- catching up (inv backup.copy)


@dataclass
class SyncPlan:
    to_copy: list[Entry]  # primary backups the copy lacks or holds differently
    copy_only: list[Located]  # only in the copy (the primary lost them): reported, left alone
    warnings: list[str]

    def lines(self, ctx: BackupContext) -> list[str]:
        cc = ctx.copy_context()
        out = [f"copy {e.id} ({e.kind}, {e.manifest.size} bytes) to s3://{cc.bucket}" for e in self.to_copy]
        out += [f"only in the copy: {loc.id} (restore and verify read it from there; the primary lost it)"
                for loc in self.copy_only]
        out.append(f"{len(self.to_copy)} backup(s) to copy; {describe(ctx)}")
        return out


def plan_sync(ctx: BackupContext) -> SyncPlan:
    if ctx.copy_context() is None:
        raise ConfigError(f"{ctx.env.path.name} has no s3.copy: there is no second copy to fill",
                          hint="add s3.copy (bucket, region, endpoint_url, key_var, secret_var): see inventory/prod.yml")
    primary, copy, warnings = listings(ctx)
    if copy is None:
        raise CopyFailed(warnings[0], hint="check s3.copy and its credentials, then run this again")
    key = ctx.manifest_key()
    located = locate(primary, copy, key)
    warnings = primary.warnings + copy.warnings
    to_copy = []
    for loc in located:
        if not loc.primary or loc.where not in ("primary only", "DIFFERS"):
            continue
        # NOTE: never spread a primary manifest that fails authentication over the copy (it may be the
        # good one): left alone, and said.
        if key is not None and authenticity.status(loc.primary.manifest, key) == "FORGED":
            warnings.append(f"{loc.id}: the primary's manifest fails authentication: not copied (investigate who "
                            "can write to the primary bucket)")
            continue
        to_copy.append(loc.primary)
    return SyncPlan(to_copy, [loc for loc in located if loc.where == "copy only"], warnings)


def sync(ctx: BackupContext, plan: SyncPlan, *, say: Callable[[str], None]) -> list[Copied]:
    """Copy every backup of the plan; the first failure stops (CopyFailed), what was copied stays."""
    done = []
    for entry in plan.to_copy:
        copied = replicate(ctx, entry.manifest)
        say(copied.line())
        done.append(copied)
    return done


def source_context(ctx: BackupContext, source: str) -> BackupContext:
    """The context to read from for ``--from primary|copy``."""
    if source not in SOURCES:
        raise ConfigError(f"--from {source!r} is not a backup target", hint="use primary or copy")
    if source == "primary":
        return ctx
    cc = ctx.copy_context()
    if cc is None:
        raise ConfigError(f"--from copy: {ctx.env.path.name} has no s3.copy", hint="drop --from, or add s3.copy")
    return cc
