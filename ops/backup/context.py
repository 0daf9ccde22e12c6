"""What every backup task needs (``BackupContext``: the environment, its env files and secrets,
the S3 client, the encryption passphrase, audit lines, manifests) and how a backup fails."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from ops import accessory, audit, s3
from ops.appenv import load_env_file, schema_for, secret_values
from ops.backup import manifest
from ops.backup.authenticity import manifest_key, sign
from ops.errors import ConfigError, OpsError
from ops.inventory import Environment, Host
from ops.masking import Masker
from ops.opsenv import operator_value
from ops.progress import NO_PROGRESS, Progress
from ops.remote import Gateway

Say = Callable[[str], None]


class BackupFailed(OpsError):
    """The backup did not complete; nothing was kept (no manifest)."""


def _quiet(_: str) -> None:
    pass


@dataclass
class BackupContext:
    """What every backup task needs: the environment, its secrets (masked), the S3 client."""

    env: Environment
    say: Say = _quiet
    masker: Masker = field(default_factory=Masker)
    client: object | None = None
    # Byte counts of every transfer (to S3 and back); what the operator sees is the task's choice.
    progress: Progress = NO_PROGRESS
    _app_values: dict[str, str] | None = None
    # What went wrong without failing the task (a second copy that could not be written): the task
    # prints these after its result.
    warnings: list[str] = field(default_factory=list)
    # The second copies this context wrote (ops.backup.second_copy.Copied), for the task's result line.
    copied: list = field(default_factory=list)
    # "primary" or "copy": which S3 target this context reads and writes (see copy_context).
    target: str = "primary"
    _copy: BackupContext | None = field(default=None, repr=False, compare=False)
    _primary: BackupContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.env.s3 is None:
            raise ConfigError(f"no s3 section in {self.env.path.name}: backups need a bucket",
                              hint="add s3: {bucket: ..., region: ...} to the inventory")
        if self.client is None:
            self.client = s3.client(self.env)

    @property
    def bucket(self) -> str:
        return self.env.s3.bucket

    def copy_context(self) -> BackupContext | None:
        """The same environment against its second copy (``s3.copy``), None when it has none.

        It shares the secrets, the masker and the progress display; its client is the copy's own
        (its own credentials variables)."""
        if self.env.s3.copy is None:
            return None
        if self._copy is None:
            # NOTE: the copy holds the primary's keys: its prefix is always the primary's.
            env = dataclasses.replace(self.env, s3=dataclasses.replace(self.env.s3.copy, prefix=self.env.s3.prefix))
            self._copy = BackupContext(env, say=self.say, masker=self.masker, target="copy",
                                       _app_values=self._app_values)
            self._copy._primary = self
            # NOTE: one list: a copy's warnings are the task's warnings.
            self._copy.warnings = self.warnings
        self._copy.progress = self.progress
        return self._copy

    def warn(self, line: str) -> None:
        """A problem that does not fail the task, kept for the task to print with its result."""
        self.warnings.append(self.masker(line))

    def app_values(self) -> dict[str, str]:
        """The app's env file (POSTGRES_*), secrets registered with the masker."""
        if self._app_values is None:
            if self.env.env_file is None:
                raise ConfigError(f"{self.env.path.name} sets no env_file: the database credentials are there",
                                  hint="set env_file: in the inventory")
            self._app_values = load_env_file(self.env.env_file)
            self.masker.add(*secret_values(self._app_values, schema_for(self.env)),
                            *accessory.secret_values(self._app_values))
        return self._app_values

    def passphrase(self) -> str | None:
        """The client-side encryption passphrase (None: encryption off): the variable named by
        ``backup.encryption_key_var``, from ``ops_env_file`` or the process environment."""
        var = self.env.backup.encryption_key_var
        if not var:
            return None
        value = operator_value(self.env, var)
        if not value:
            where = str(self.env.ops_env_file) if self.env.ops_env_file else "the environment (no ops_env_file set)"
            raise ConfigError(f"{var} is not set in {where}: backups of {self.env.name} are configured to be "
                              "client-side encrypted with it (backup.encryption_key_var)",
                              hint=f"add {var}=<long random passphrase> to the ops env file (chmod 600), and keep "
                                   "a copy offline: without it no backup can be restored")
        self.masker.add(value)
        return value

    def manifest_key(self) -> bytes | None:
        """The key that authenticates manifests (from the passphrase), None when encryption is off."""
        passphrase = self.passphrase()
        return manifest_key(passphrase) if passphrase else None

    def audit(self, gw: Gateway, action: str, outcome: str, detail: str, hosts: list[Host] | None = None,
              version: str | None = None) -> None:
        event = audit.AuditEvent(env=self.env.name, action=action, outcome=outcome, version=version,
                                 detail=self.masker(detail),
                                 hosts=[h.name for h in (hosts or list(self.env.hosts.values()))])
        for warning in audit.record(gw, event, hosts or list(self.env.hosts.values()),
                                    central=audit.central_copy(self.env)):
            self.say(f"warning: {warning}")

    def put_manifest(self, m: manifest.Manifest, *, new_backup: bool = False) -> None:
        """Write (or rewrite) ``m`` next to its data, authenticated when a passphrase is configured.
        For a ``new_backup`` that fails here, the data object is removed too: without its manifest
        it would only be an orphan.

        NOTE: callers rewrite a manifest (a drill's outcome, a safety backup's mark) only after they
        checked its authenticity, or the operator vouched for it: signing is the last step here."""
        extra = {"ServerSideEncryption": self.env.s3.sse} if self.env.s3.sse else {}
        key = self.manifest_key()
        if key is not None:
            sign(m, key)
        body = m.to_json()
        try:
            self.client.put_object(Bucket=self.bucket, Key=manifest.manifest_key(m.object_key), Body=body,
                                   ContentType="application/json", **extra)
        except (BotoCoreError, ClientError) as exc:
            if new_backup:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self.client.delete_object(Bucket=self.bucket, Key=m.object_key)
            raise self.s3_error(f"writing the manifest of {m.id}" + (" (data removed)" if new_backup else ""),
                                exc) from None
        if not new_backup:
            self._rewrite_in_other(m, body)

    def _rewrite_in_other(self, m: manifest.Manifest, body: bytes) -> None:
        """A rewritten manifest (a drill's outcome, a safety mark) written to the other target too, where
        that target holds the backup: both copies keep the same bytes, hence the same HMAC."""
        other = self.copy_context() if self.target == "primary" else self._primary
        if other is None:
            return
        key = manifest.manifest_key(m.object_key)
        extra = {"ServerSideEncryption": other.env.s3.sse} if other.env.s3.sse else {}
        try:
            other.client.head_object(Bucket=other.bucket, Key=key)
        except (BotoCoreError, ClientError):
            return  # not there (or unreachable): backup.check reports the divergence
        try:
            other.client.put_object(Bucket=other.bucket, Key=key, Body=body, ContentType="application/json", **extra)
        except (BotoCoreError, ClientError) as exc:
            self.warn(f"the {other.target}'s manifest of {m.id} was not updated ({exc}): "
                      f"inv backup.copy --host {self.env.name} puts it in step")

    def s3_error(self, what: str, exc: Exception) -> BackupFailed:
        return BackupFailed(f"{what}: S3 error: {self.masker(str(exc))}",
                            hint=f"check the bucket {self.bucket}, the endpoint and the credentials")
