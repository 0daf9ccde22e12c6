"""Pure builders for pgBackRest in the Postgres accessory: its settings, the server's archiving
flags, and the argv of every pgBackRest command the tool runs (unit-tested by equality).

Where the settings live: every pgBackRest option reaches the container as a ``PGBACKREST_*``
variable in the accessory's env file (0600 on the host, ``docker run --env-file``), secrets
(S3 keys, the repository passphrase) included, so nothing secret is ever in argv, in ``ps``
or in a config file baked into an image. ``docker exec`` inherits the container's
variables, and so does ``archive_command`` (a child of the postmaster).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ops.commands import docker
from ops.pitr_config import PitrRepo, PitrSettings

Argv = tuple[str, ...]

SPOOL_PATH = "/var/spool/pgbackrest"
CA_DIR = "/etc/pgbackrest"
CIPHER_TYPE = "aes-256-cbc"
COMPRESS_TYPE = "zst"
BACKUP_TYPES = ("full", "diff", "incr")
# Seconds a backup waits for the WAL segment that makes it consistent: after a bulk load
# the async archiver can be 100+ segments behind (60 s, pgBackRest's default, then fails).
BACKUP_ARCHIVE_TIMEOUT = 600


def container_ca_path(n: int) -> str:
    return f"{CA_DIR}/repo{n}-ca.pem"


def repo_env(n: int, repo: PitrRepo, *, key: str, secret: str, passphrase: str,
             retention_full: int) -> dict[str, str]:
    p = f"PGBACKREST_REPO{n}_"
    out = {
        f"{p}TYPE": "s3",
        f"{p}PATH": repo.path,
        f"{p}S3_BUCKET": repo.bucket,
        f"{p}S3_ENDPOINT": repo.endpoint,
        f"{p}S3_REGION": repo.region,
        f"{p}S3_URI_STYLE": repo.uri_style,
        f"{p}STORAGE_PORT": str(repo.port),
        f"{p}S3_KEY": key,
        f"{p}S3_KEY_SECRET": secret,
        f"{p}CIPHER_TYPE": CIPHER_TYPE,
        f"{p}CIPHER_PASS": passphrase,
        f"{p}RETENTION_FULL": str(retention_full),
        # Small files bundled into few objects: a full backup of 1.17 GiB (about 1,290 files, one
        # S3 object each without it) took 27.7 s instead of 36.1 s per repository here.
        f"{p}BUNDLE": "y",
    }
    if repo.ca_file is not None:
        out[f"{p}STORAGE_CA_FILE"] = container_ca_path(n)
    return out


def accessory_env(settings: PitrSettings, *, data_path: str, port: int, db_user: str,
                  credentials: Mapping[int, tuple[str, str]], passphrase: str) -> dict[str, str]:
    """Every ``PGBACKREST_*`` variable of the accessory (``credentials``: repo number -> key, secret)."""
    out = {
        "PGBACKREST_STANZA": settings.stanza,
        "PGBACKREST_PG1_PATH": data_path,
        "PGBACKREST_PG1_PORT": str(port),
        # The superuser of the accessory (local socket, trust): the image has no "postgres" role.
        "PGBACKREST_PG1_USER": db_user,
        "PGBACKREST_ARCHIVE_ASYNC": "y",
        "PGBACKREST_SPOOL_PATH": SPOOL_PATH,
        "PGBACKREST_PROCESS_MAX": str(settings.process_max),
        "PGBACKREST_COMPRESS_TYPE": COMPRESS_TYPE,
        "PGBACKREST_START_FAST": "y",
        "PGBACKREST_ARCHIVE_TIMEOUT": str(BACKUP_ARCHIVE_TIMEOUT),
        "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
        "PGBACKREST_LOG_LEVEL_FILE": "info",
    }
    for n, repo in enumerate(settings.repos, 1):
        key, secret = credentials[n]
        out.update(repo_env(n, repo, key=key, secret=secret, passphrase=passphrase,
                            retention_full=settings.retention_full))
    return out


def server_command(settings: PitrSettings, *, archive: bool = True) -> Argv:
    """``postgres -c ...``: archiving on (or off for a scratch instance). NOTE: command-line settings
    beat ``postgresql.auto.conf``, where a restore with ``--archive-mode=off`` leaves ``off``."""
    return ("postgres", "-c", "wal_level=replica", "-c", f"archive_mode={'on' if archive else 'off'}",
            "-c", "archive_command=pgbackrest archive-push %p",
            "-c", f"archive_timeout={settings.archive_timeout}", "-c", "max_wal_senders=3")


def _exec(container: str, *args: str) -> Argv:
    return docker.exec_argv(container, "pgbackrest", *args, user="postgres")


def stanza_create_argv(container: str, *, io_timeout: int) -> Argv:
    return _exec(container, f"--io-timeout={io_timeout}", "stanza-create")


def check_argv(container: str, *, io_timeout: int) -> Argv:
    """A WAL switch archived into every repository (``check`` takes no ``--repo``)."""
    return _exec(container, f"--io-timeout={io_timeout}", "check")


def info_argv(container: str, *, repo: int | None = None, io_timeout: int | None = None) -> Argv:
    """``io_timeout``: bounds every S3 request (an unreachable repository answers in seconds)."""
    return _exec(container, *([f"--io-timeout={io_timeout}"] if io_timeout else []), "--output=json",
                 *([f"--repo={repo}"] if repo else []), "info")


def backup_argv(container: str, kind: str, *, repo: int = 1, console: str | None = None) -> Argv:
    """``console="detail"``: a line per file on stdout (what ``ops.backup.pgbackrest_progress`` counts)."""
    if kind not in BACKUP_TYPES:
        raise ValueError(f"backup type {kind!r} is not one of {BACKUP_TYPES}")
    if console not in (None, "detail"):
        raise ValueError(f"console log level {console!r} is not detail")
    return _exec(container, *([f"--log-level-console={console}"] if console else []), f"--type={kind}",
                 f"--repo={repo}", "backup")


def expire_argv(container: str, *, repo: int) -> Argv:
    return _exec(container, f"--repo={repo}", "expire")


def target_text(at: datetime) -> str:
    """``--target`` for ``--type=time``: UTC, to the second, with an explicit offset."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def restore_args(at: datetime, backup_set: str, *, repo: int = 1) -> Argv:
    """``pgbackrest restore`` into an empty data directory: replay to ``at``, then promote; the
    restored server must not archive into the stanza while it is checked (``--archive-mode=off``)."""
    return ("pgbackrest", "restore", f"--repo={repo}", f"--set={backup_set}", "--type=time",
            f"--target={target_text(at)}", "--target-action=promote", "--archive-mode=off")


def wal_segment(timeline: int, lsn: str, segment_bytes: int = 16 * 1024 * 1024) -> str:
    """The WAL file name holding ``lsn`` (``0/3000060``) on ``timeline``."""
    hi, lo = (int(part, 16) for part in lsn.split("/"))
    pos = (hi << 32) | lo
    per_xlogid = 0x100000000 // segment_bytes
    seg = pos // segment_bytes
    return f"{timeline:08X}{seg // per_xlogid:08X}{seg % per_xlogid:08X}"
