"""Load and validate the app's env file (``env_file`` in the inventory) before a deploy.

Which variables the file holds is the app's schema (``EnvSchema``), chosen by the
inventory's ``env_schema:`` key: the name of a built-in profile or a YAML file the app
declares (see ``read_schema_file`` and README "The app's env schema"). The built-in
profile ``nextjs-prisma`` (the default) is ``SCHEMA`` below: the variables of the
Next.js + Prisma + PostgreSQL + Socket.io app, with one rule each. Validation collects
every problem before failing; each problem is one line naming the variable, the rule it
breaks and the fix. The value of a secret variable never appears in any message (nor
does any part of a ``postgres-url`` variable such as ``DATABASE_URL`` other than its
scheme: a malformed URL can put the password anywhere).

File syntax is python-dotenv's (``dotenv_values``), with these decisions:

- **Inline comments** are dotenv's: in an unquoted value, whitespace followed by ``#``
  starts a comment (``MAX_FILE_SIZE=10485760  # 10MB`` is ``10485760``); a ``#`` with
  no whitespace before it is part of the value (``a#b``); inside quotes ``#`` is kept.
  Quote a secret that contains `` #``, or it is cut short.
- **Interpolation is on**, as Compose and Kamal users expect: ``${NAME}`` and
  ``${NAME:-default}`` in unquoted and double-quoted values are replaced by the value
  of ``NAME`` set *earlier in the same file* (``:-`` uses the default when ``NAME`` is
  unset or empty). The operator's shell environment is never consulted, so the result
  does not depend on who runs the deploy. A reference to a variable that is not set
  above it, without a default, is an error rather than python-dotenv's silent empty
  string. Single-quoted values are literal (Compose/shell convention; python-dotenv
  would expand them): quote a secret containing ``${`` with '...'. Bare ``$NAME`` is
  never expanded.
- The values returned are the resolved ones: ship those to the hosts (e.g. render
  ``NAME=value`` lines), not the file itself; ``docker --env-file`` neither strips
  quotes and inline comments nor expands ``${...}``.
- An empty value of an optional variable counts as unset (``DATADOG_API_KEY=``
  disables Datadog), except ``SENTRY_ENVIRONMENT`` and ``POSTGRES_*``, which must not be
  empty when present.
"""

from __future__ import annotations

import io
import ipaddress
import re
import shlex
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import yaml
from dotenv import dotenv_values
from dotenv.parser import Binding, parse_stream
from dotenv.variables import Literal, parse_variables

from ops.errors import ConfigError
from ops.masking import MIN_SECRET_LENGTH, Masker

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PATH = PROJECT_ROOT / "examples" / "env.production.example"
EXAMPLE_REL = "examples/env.production.example"

# (rule text, fix) when a value breaks its rule; None when it is fine.
Failure = tuple[str, str] | None
Rule = Callable[[str, bool], Failure]


@dataclass(frozen=True)
class Var:
    name: str
    rule: Rule                      # called with (value, production) whenever the variable is present
    required: bool
    secret: bool                    # never shown in messages; masked in all output
    description: str
    example: str                    # for render_example(); a <placeholder> for secrets
    # The rule's name in schema files; "postgres-url": no part of the value is ever shown
    # and its password is masked like a secret.
    rule_name: str = ""
    # The rule as data ({"rule": name, options...}) for code generated from the schema in other
    # languages (``inv scaffold`` writes config/environment.ts); see ``rule_spec``.
    spec: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Problem:
    name: str
    rule: str
    fix: str
    severity: str = "error"         # "error" or "warning"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        text = f"{self.name}: {self.rule} — {self.fix}"
        return text if self.is_error else f"warning: {text}"


class EnvFileError(ConfigError):
    """The env file breaks the schema; ``problems`` holds every problem (errors and warnings)."""

    def __init__(self, path: Path, problems: list[Problem], *, production: bool):
        self.path = path
        self.problems = list(problems)
        errors = [p for p in self.problems if p.is_error]
        warnings = [p for p in self.problems if not p.is_error]
        count = _plural(len(errors), "problem")
        if warnings:
            count += f", {_plural(len(warnings), 'warning')}"
        rules = "production" if production else "non-production"
        lines = [f"{_rel(path)}: {count} ({rules} rules):"]
        lines += [f"  {p}" for p in errors + warnings]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------- rules


def _show(value: str, limit: int = 60) -> str:
    """A non-secret value for a message: quoted (so whitespace shows), cut when long."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _is_hostname(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    host = host.removesuffix(".")
    return 0 < len(host) <= 253 and all(_LABEL_RE.match(label) for label in host.split("."))


def _split(value: str) -> SplitResult | None:
    """``urlsplit`` plus a port check; None when the URL cannot be split or its port is bad."""
    try:
        parts = urlsplit(value)
        port = parts.port           # raises ValueError unless an integer 0-65535
    except ValueError:
        return None
    if port == 0:
        return None
    return parts


def _has_space(value: str) -> bool:
    return any(c.isspace() for c in value)


def _optional(rule: Rule) -> Rule:
    """An empty value means "not set": the rule only sees non-empty values."""
    def check(value: str, production: bool) -> Failure:
        return rule(value, production) if value else None
    return check


def _postgres_url(value: str, production: bool) -> Failure:
    # Never echo any part of the value but its scheme: the password may be anywhere in it.
    fix = ("write postgresql://USER:PASSWORD@HOST:5432/DBNAME and percent-encode special "
           "characters in the password (@ : / ? # % as %40 %3A %2F %3F %23 %25)")
    if _has_space(value):
        return "must not contain whitespace", fix
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if not scheme:
        return "must be a postgresql:// URL", fix
    if scheme.group(1).lower() not in ("postgres", "postgresql"):
        return f"must be a postgres:// or postgresql:// URL (got scheme {scheme.group(1)!r})", fix
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL", fix
    if not parts.username or not parts.password:
        return "must include a user and a password (USER:PASSWORD@HOST)", fix
    if not parts.hostname:
        return "must include a host", fix
    if _split(value) is None:
        return "has a port that is not an integer 1-65535", fix
    dbname = parts.path[1:]
    if not dbname:
        return "must end with a database name (/DBNAME)", fix
    if "/" in dbname:
        return "must have a single database name after the host (/DBNAME)", fix
    if len(unquote(parts.password)) < MIN_SECRET_LENGTH:
        return (f"password must be at least {MIN_SECRET_LENGTH} characters (shorter values cannot be masked)",
                "generate one with: openssl rand -hex 24")
    return None


def _one_of(*choices: str) -> Rule:
    def check(value: str, production: bool) -> Failure:
        if value in choices:
            return None
        return f"must be one of {', '.join(choices)} (got {_show(value)})", f"write {choices[0]} or {choices[1]}"
    return check


def _url(example: str, *, schemes: tuple[str, ...] = ("http", "https"), https: str = "production",
         hidden: bool = False) -> Rule:
    """A URL with a host and one of ``schemes``; ``https``: "production" (https there),
    "always" or "never" (when http and https are both allowed). ``hidden``: no part of
    the value in any message (a secret URL)."""
    kind = "an http(s)" if set(schemes) == {"http", "https"} else "a " + " or ".join(f"{s}://" for s in schemes)

    def check(value: str, production: bool) -> Failure:
        got = "" if hidden else f" (got {_show(value)})"
        parts = _split(value)
        if _has_space(value) or parts is None or parts.scheme not in schemes \
                or not parts.hostname or not _is_hostname(parts.hostname):
            return f"must be {kind} URL with a host{got}", f"write e.g. {example}"
        if parts.scheme == "http" and "https" in schemes and (https == "always" or https == "production"
                                                              and production):
            where = " in production" if https == "production" else ""
            fix = "write it with https://" if hidden else f"write https://{parts.netloc}{parts.path}"
            return f"must use https{where}{got}", f"{fix}; TLS ends at the proxy"
        return None
    return check


def _web_url(example: str) -> Rule:
    """An http(s) URL with a host; https in production."""
    return _url(example)


def _min_length(length: int, fix: str) -> Rule:
    def check(value: str, production: bool) -> Failure:
        if len(value) >= length:
            return None
        return f"must be at least {length} characters (got {len(value)})", fix
    return check


def _namespace(value: str, production: bool) -> Failure:
    if value.startswith("/") and not _has_space(value):
        return None
    return f"must start with '/' and contain no spaces (got {_show(value)})", "write e.g. /socket.io"


def _absolute_path(value: str, production: bool) -> Failure:
    if value.startswith("/") and value.strip() == value and value.rstrip("/"):
        return None
    return (f"must be an absolute directory path, not the root (got {_show(value)})",
            "write e.g. /var/app/uploads (inside the container; mount a volume there)")


def _positive_bytes(value: str, production: bool) -> Failure:
    if re.fullmatch(r"[0-9]+", value) and int(value) > 0:
        return None
    return (f"must be a positive integer number of bytes (got {_show(value)})",
            "write bytes without units, e.g. 10485760 for 10 MB")


def _hostname(value: str, production: bool) -> Failure:
    if _is_hostname(value):
        return None
    return (f"must be a host name or IP address (got {_show(value)})",
            "write only the host, without scheme or port, e.g. smtp.gmail.com")


def _port(value: str, production: bool) -> Failure:
    if re.fullmatch(r"[0-9]+", value) and 1 <= int(value) <= 65535:
        return None
    return f"must be an integer port 1-65535 (got {_show(value)})", "write e.g. 587 (STARTTLS) or 465 (TLS)"


def _not_empty(value: str, production: bool) -> Failure:
    return None if value.strip() else ("is set but empty", "give it a value or remove the line")


def _sentry_dsn(value: str, production: bool) -> Failure:
    # Secret: no part of the value is shown.
    fix = ("copy the DSN from Sentry (Project Settings > Client Keys); "
           "shape https://<key>@<host>/<project id>")
    parts = _split(value)
    if _has_space(value) or parts is None or parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL", fix
    if not parts.username:
        return "must include the public key before '@'", fix
    if not re.fullmatch(r"(/[^/]+)*/[0-9]+", parts.path):
        return "must end with the numeric project id (/<project id>)", fix
    return None


def _sentry_environment(value: str, production: bool) -> Failure:
    # Sentry's rules for environment names.
    if value and not re.search(r"[\s/]", value) and len(value) <= 64 and value != "None":
        return None
    return (f"must be a non-empty name without spaces or '/', at most 64 characters (got {_show(value)})",
            "write e.g. production or staging, or remove the line")


def _datadog_key(value: str, production: bool) -> Failure:
    if re.fullmatch(r"[0-9a-f]{32}", value):
        return None
    return (f"must be 32 lowercase hexadecimal characters (got {len(value)} characters)",
            "copy an API key from Datadog (Organization Settings > API Keys), or remove the line")


def _pg_name(value: str, production: bool) -> Failure:
    if value.strip() and len(value.encode()) <= 63:
        return None
    return (f"must be a non-empty name of at most 63 bytes (got {_show(value)})",
            "write e.g. app; usually the same as in DATABASE_URL")


def _pg_password(value: str, production: bool) -> Failure:
    if len(value) >= MIN_SECRET_LENGTH:
        return None
    return (f"must be at least {MIN_SECRET_LENGTH} characters (got {len(value)})",
            "use the password in DATABASE_URL; generate one with: openssl rand -hex 24")


# ---------------------------------------------------------------- schema

SCHEMA: tuple[Var, ...] = (
    Var("DATABASE_URL", _postgres_url, True, False,
        "PostgreSQL connection string for Prisma: postgresql://USER:PASSWORD@HOST:PORT/DBNAME. "
        "Percent-encode special characters in the password.",
        "postgresql://app:<db-password>@<db-host>:5432/app", rule_name="postgres-url"),
    Var("PRISMA_QUERY_ENGINE_TYPE", _optional(_one_of("binary", "library")), False, False,
        "Prisma query engine: binary (separate process) or library (Node-API, Prisma's default).",
        "binary"),
    Var("NEXTAUTH_URL", _web_url("https://app.example.org"), True, False,
        "Public URL of the site, for NextAuth callbacks and redirects; https in production.",
        "https://your-domain.com"),
    Var("NEXTAUTH_SECRET", _min_length(32, "generate one with: openssl rand -base64 32"), True, True,
        "Signs and encrypts NextAuth sessions and tokens; at least 32 characters. "
        "Generate with: openssl rand -base64 32",
        "<generate-32-char-random>"),
    Var("NEXT_PUBLIC_SOCKET_URL", _web_url("https://app.example.org"), True, False,
        "URL browsers open the Socket.io connection to; https in production. Next.js inlines "
        "NEXT_PUBLIC_* values into the browser bundle at build time: build the image with the same value.",
        "https://your-domain.com"),
    Var("NEXT_PUBLIC_SOCKET_NAMESPACE", _namespace, True, False,
        "Socket.io namespace the client connects to; starts with '/'.",
        "/socket.io"),
    Var("FILE_UPLOAD_DIR", _absolute_path, True, False,
        "Absolute directory (inside the container) where uploads are stored; mount a volume there.",
        "/var/app/uploads"),
    Var("MAX_FILE_SIZE", _positive_bytes, True, False,
        "Largest accepted upload, in bytes (10485760 = 10 MB).",
        "10485760"),
    Var("SMTP_HOST", _hostname, True, False,
        "Mail server host name (no scheme, no port) for notifications and password resets.",
        "smtp.gmail.com"),
    Var("SMTP_PORT", _port, True, False,
        "Mail server port: 587 (STARTTLS) or 465 (TLS).",
        "587"),
    Var("SMTP_USER", _not_empty, True, False,
        "SMTP login.",
        "your-email@gmail.com"),
    Var("SMTP_PASSWORD", _not_empty, True, True,
        "SMTP password (for Gmail: an app password).",
        "<smtp-app-password>"),
    Var("SENTRY_DSN", _optional(_sentry_dsn), False, True,
        "Sentry DSN, https://<key>@<host>/<project id> (Project Settings > Client Keys). "
        "Unset: no error reporting.",
        "https://<key>@<host>/<project-id>"),
    Var("SENTRY_ENVIRONMENT", _sentry_environment, False, False,
        "Environment Sentry tags events with.",
        "production"),
    Var("DATADOG_API_KEY", _optional(_datadog_key), False, True,
        "Datadog API key (32 hexadecimal characters). Unset: no Datadog monitoring.",
        "<datadog-api-key>"),
    Var("POSTGRES_USER", _pg_name, False, False,
        "Role the postgres accessory creates on its first start; usually the user in DATABASE_URL.",
        "app"),
    Var("POSTGRES_PASSWORD", _pg_password, False, True,
        "Password of POSTGRES_USER; usually the password in DATABASE_URL.",
        "<db-password>"),
    Var("POSTGRES_DB", _pg_name, False, False,
        "Database the postgres accessory creates on its first start; usually the one in DATABASE_URL.",
        "app"),
)
VARS: dict[str, Var] = {var.name: var for var in SCHEMA}
# The built-in profile's rules as data (``rule_spec``): what generated validators in other
# languages check. tests/unit/test_scaffold_environment.py runs the generated TypeScript
# against these Python rules on the same values, so the two cannot drift apart.
_BUILTIN_SPECS: dict[str, dict] = {
    "DATABASE_URL": {"rule": "postgres-url"},
    "PRISMA_QUERY_ENGINE_TYPE": {"rule": "one-of", "choices": ["binary", "library"]},
    "NEXTAUTH_URL": {"rule": "url"},
    "NEXTAUTH_SECRET": {"rule": "string", "min_length": 32},
    "NEXT_PUBLIC_SOCKET_URL": {"rule": "url"},
    "NEXT_PUBLIC_SOCKET_NAMESPACE": {"rule": "namespace"},
    "FILE_UPLOAD_DIR": {"rule": "absolute-path"},
    "MAX_FILE_SIZE": {"rule": "integer", "min": 1},
    "SMTP_HOST": {"rule": "hostname"},
    "SMTP_PORT": {"rule": "port"},
    "SMTP_USER": {"rule": "not-empty"},
    "SMTP_PASSWORD": {"rule": "not-empty"},
    "SENTRY_DSN": {"rule": "sentry-dsn"},
    "SENTRY_ENVIRONMENT": {"rule": "sentry-environment", "empty": "error"},
    "DATADOG_API_KEY": {"rule": "datadog-api-key"},
    "POSTGRES_USER": {"rule": "pg-name", "empty": "error"},
    "POSTGRES_PASSWORD": {"rule": "string", "min_length": MIN_SECRET_LENGTH, "empty": "error"},
    "POSTGRES_DB": {"rule": "pg-name", "empty": "error"},
}


def rule_spec(var: Var) -> dict:
    """``var``'s rule as data: ``{"rule": name, ...options}`` (options: choices, min, max, schemes,
    https, min_length, empty)."""
    return dict(var.spec or _BUILTIN_SPECS.get(var.name) or {"rule": var.rule_name or "string"})
# Not secret as a whole (its host and user are useful in logs), but a malformed URL can
# put the password anywhere in it: no message shows any of it.
_NEVER_SHOWN = frozenset({"DATABASE_URL"})

# Sections of the rendered example, in the seed plan's order.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Database", ("DATABASE_URL", "PRISMA_QUERY_ENGINE_TYPE")),
    ("NextAuth", ("NEXTAUTH_URL", "NEXTAUTH_SECRET")),
    ("Socket.io", ("NEXT_PUBLIC_SOCKET_URL", "NEXT_PUBLIC_SOCKET_NAMESPACE")),
    ("File storage", ("FILE_UPLOAD_DIR", "MAX_FILE_SIZE")),
    ("Email (notifications, password resets)", ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD")),
    ("Error tracking (Sentry)", ("SENTRY_DSN", "SENTRY_ENVIRONMENT")),
    ("Monitoring", ("DATADOG_API_KEY",)),
    ("PostgreSQL accessory (when the inventory runs one; checked only when set)",
     ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")),
)

# Text copied from an example instead of a real value. ``<word-word>`` anywhere, or a
# phrase from the seed plan's example.
_PLACEHOLDER_RE = re.compile(r"<[a-z][a-z0-9-]*>")
_PLACEHOLDER_TEXT = ("your-domain.com", "your-email@", "app-password", "password@host", "changeme", "change-me")


def is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return bool(_PLACEHOLDER_RE.search(value)) or any(text in lowered for text in _PLACEHOLDER_TEXT)


# ---------------------------------------------------------------- schemas


@dataclass(frozen=True)
class EnvSchema:
    """Which variables an app's env file holds: a built-in profile or a file the app declares."""

    name: str                                     # the profile's name, or the schema file as shown
    vars: tuple[Var, ...]                         # declared, in order
    sections: tuple[tuple[str, tuple[str, ...]], ...] = ()   # for render_example(); () = one list
    # Where a missing variable is explained, as shown in "add NAME=... (<reference>)".
    reference: str = f"see {EXAMPLE_REL}"
    # Variables this tool itself reads, checked when set although the schema does not
    # declare them (a schema file need not know that nginx's body limit comes from MAX_FILE_SIZE).
    tool_vars: tuple[Var, ...] = ()
    by_name: dict[str, Var] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {var.name: var for var in self.vars + self.tool_vars})


DEFAULT_PROFILE = "nextjs-prisma"
PROFILES: dict[str, EnvSchema] = {
    DEFAULT_PROFILE: EnvSchema(DEFAULT_PROFILE, SCHEMA, SECTIONS),
}

# Read by the tool itself (nginx body limit, uploads volume, Postgres accessory, migration
# report, backups): checked with the built-in rules when set, unless a schema file declares them.
TOOL_VARIABLES = ("DATABASE_URL", "FILE_UPLOAD_DIR", "MAX_FILE_SIZE", "POSTGRES_USER", "POSTGRES_PASSWORD",
                  "POSTGRES_DB")

SCHEMA_FILE_SUFFIXES = (".yml", ".yaml")
RULE_NAMES = ("string", "url", "postgres-url", "integer", "port", "email", "hostname", "absolute-path", "one-of",
              "sentry-dsn", "datadog-api-key")
# Settings that only mean something with one rule.
_RULE_OPTIONS = {"choices": "one-of", "min": "integer", "max": "integer", "schemes": "url", "https": "url"}
_VAR_KEYS = ("required", "secret", "rule", "choices", "min", "max", "schemes", "https", "min_length", "empty",
             "description", "example")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*\Z")


class EnvSchemaError(ConfigError):
    """A schema file is wrong; ``problems`` holds one line each: file, key path, problem, fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def is_schema_file(spec: str) -> bool:
    """True when an ``env_schema`` value names a file rather than a built-in profile."""
    return spec.endswith(SCHEMA_FILE_SUFFIXES)


def load_schema(spec: str | None = None, *, root: Path = PROJECT_ROOT, checkout: Path | None = None) -> EnvSchema:
    """The schema ``spec`` names: a built-in profile (default ``nextjs-prisma``) or a ``.yml`` file.

    A relative file path is looked up like every path of the inventory, from ``root``
    (the repository root), then in ``checkout`` (the app's git checkout, ``build.source``).
    """
    spec = spec or DEFAULT_PROFILE
    if not is_schema_file(spec):
        if spec in PROFILES:
            return PROFILES[spec]
        raise ConfigError(f"env_schema {spec!r} is not a built-in profile",
                          hint=f"use one of: {', '.join(PROFILES)}, or a path to a .yml schema file")
    path = Path(spec).expanduser()
    candidates = [path] if path.is_absolute() else [root / path] + ([Path(checkout) / path] if checkout else [])
    for candidate in candidates:
        if candidate.is_file():
            return read_schema_file(candidate)
    raise ConfigError(f"env_schema {spec}: no such file (looked for {' and '.join(_rel(c) for c in candidates)})",
                      hint="fix the path (relative to the repository root or the app's checkout, build.source), "
                           f"or use a built-in profile: {', '.join(PROFILES)}")


def schema_for(env: Any) -> EnvSchema:
    """The schema of an ``Environment`` (``env_schema`` in its inventory)."""
    return load_schema(getattr(env, "env_schema", None), root=Path(env.path).parent.parent,
                       checkout=env.build.source)


def _hiding(rule: Rule) -> Rule:
    """``rule`` for a secret: a message never shows the value (built-in rules quote it as ``(got '...')``)."""
    def check(value: str, production: bool) -> Failure:
        failure = rule(value, production)
        if failure is None:
            return None
        shown = _show(value)
        text, fix = (part.replace(f" (got {shown})", "").replace(shown, "the value") for part in failure)
        return text, fix
    return check


def _integer(lo: int | None, hi: int | None) -> Rule:
    def check(value: str, production: bool) -> Failure:
        bounds = (f" {lo}-{hi}" if lo is not None and hi is not None else f" >= {lo}" if lo is not None
                  else f" <= {hi}" if hi is not None else "")
        if not re.fullmatch(r"-?[0-9]+", value) or (lo is not None and int(value) < lo) \
                or (hi is not None and int(value) > hi):
            return f"must be an integer{bounds} (got {_show(value)})", "write digits only, without units"
        return None
    return check


def _choice(choices: tuple[str, ...]) -> Rule:
    def check(value: str, production: bool) -> Failure:
        if value in choices:
            return None
        fix = f"write {choices[0]}" if len(choices) == 1 else "write one of them (case-sensitive)"
        return f"must be one of {', '.join(choices)} (got {_show(value)})", fix
    return check


def _email(value: str, production: bool) -> Failure:
    local, at, domain = value.rpartition("@")
    if at and local and not _has_space(value) and "." in domain and _is_hostname(domain):
        return None
    return f"must be an email address (got {_show(value)})", "write e.g. ops@example.org"


def _with_min_length(rule: Rule, length: int, secret: bool) -> Rule:
    fix = (f"generate one with: openssl rand -hex {max(16, (length + 1) // 2)}" if secret
           else f"write at least {length} characters")

    def check(value: str, production: bool) -> Failure:
        failure = rule(value, production)
        if failure or len(value) >= length:
            return failure
        return f"must be at least {length} characters (got {len(value)})", fix
    return check


def _not_empty_then(rule: Rule) -> Rule:
    def check(value: str, production: bool) -> Failure:
        return _not_empty(value, production) or rule(value, production)
    return check


def _pass(value: str, production: bool) -> Failure:
    return None


class _SchemaReader:
    """Builds an ``EnvSchema`` from a parsed schema file, collecting every problem."""

    def __init__(self, shown: str):
        self.shown = shown
        self.problems: list[str] = []

    def problem(self, key: str, msg: str, fix: str) -> None:
        self.problems.append(f"{self.shown}: {key}: {msg} — {fix}")

    def duplicates(self, node: yaml.Node | None, prefix: str = "") -> None:
        """Keys written twice in one mapping: YAML silently keeps the last, so a declaration would vanish."""
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                where = f"{prefix}.{key}" if prefix else key
                if key in seen:
                    self.problem(where, f"written twice (again on line {key_node.start_mark.line + 1})",
                                 "keep one: YAML would silently keep only the last")
                seen.add(key)
                self.duplicates(value_node, where)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.duplicates(item, f"{prefix}[{i}]")

    def schema(self, raw: Any) -> EnvSchema:
        declared = None
        if not isinstance(raw, dict):
            got = "nothing (the file is empty)" if raw is None else type(raw).__name__
            self.problem("(top level)", f"must be a mapping with 'variables:', got {got}",
                         "start the file with 'variables:' followed by the app's variable names, indented")
        elif "variables" not in raw:
            self.problem("variables", "missing", "declare the app's variables under 'variables:'")
        elif not isinstance(raw["variables"], dict) or not raw["variables"]:
            self.problem("variables", f"must be a non-empty mapping of NAME -> settings, got {raw['variables']!r}",
                         "write e.g. 'variables: {DATABASE_URL: {required: true, rule: postgres-url}}'")
        else:
            declared = raw["variables"]
        for key in raw if isinstance(raw, dict) else ():
            if key != "variables":
                self.problem(str(key), "unknown key", "remove it; the only top-level key is 'variables'")
        variables = [var for name, spec in (declared.items() if isinstance(declared, dict) else ())
                     if (var := self.variable(name, spec)) is not None]
        names = {var.name for var in variables}
        tool_vars = tuple(_optional_copy(VARS[name]) for name in TOOL_VARIABLES if name not in names)
        return EnvSchema(self.shown, tuple(variables), (), f"declared in {self.shown}", tool_vars)

    def flag(self, spec: dict, key: str, where: str) -> bool:
        value = spec.get(key, False)
        if not isinstance(value, bool):
            self.problem(f"{where}.{key}", f"must be true or false, got {value!r}", "write true or false")
            return False
        return value

    def integer(self, spec: dict, key: str, where: str, *, lo: int | None = None) -> int | None:
        value = spec.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
            floor = f" >= {lo}" if lo is not None else ""
            self.problem(f"{where}.{key}", f"must be an integer{floor}, got {value!r}", f"write e.g. {key}: {lo or 1}")
            return None
        return value

    def text(self, spec: dict, key: str, where: str) -> str:
        value = spec.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(f"{where}.{key}", f"must be text, got {type(value).__name__}", "write it on one line")
            return ""
        return str(value)

    def variable(self, name: Any, spec: Any) -> Var | None:
        where = f"variables.{name}"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.problem(where, f"{name!r} is not a variable name",
                         "use letters, digits and '_', not starting with a digit (e.g. DATABASE_URL)")
            return None
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            self.problem(where, f"must be a mapping of settings, got {spec!r}",
                         "write e.g. '{required: true, rule: url}', or nothing for an optional string")
            return None
        for key in spec:
            if key not in _VAR_KEYS:
                self.problem(f"{where}.{key}", "unknown setting", f"remove it or use one of: {', '.join(_VAR_KEYS)}")
        required = self.flag(spec, "required", where)
        secret = self.flag(spec, "secret", where)
        rule_name = spec.get("rule", "string")
        if rule_name not in RULE_NAMES:
            self.problem(f"{where}.rule", f"unknown rule {rule_name!r}", f"use one of: {', '.join(RULE_NAMES)}")
            rule_name = "string"
        for key, owner in _RULE_OPTIONS.items():
            if key in spec and rule_name != owner:
                self.problem(f"{where}.{key}", f"only applies to rule {owner}", f"remove it, or set rule: {owner}")
        rule = self.rule(rule_name, spec, where, secret)
        min_length = self.integer(spec, "min_length", where, lo=1)
        if min_length:
            rule = _with_min_length(rule, min_length, secret)
        empty = spec.get("empty", "unset")
        if empty not in ("unset", "error"):
            self.problem(f"{where}.empty", f"must be unset or error, got {empty!r}",
                         "write 'unset' (an empty value counts as not set) or 'error'")
            empty = "unset"
        if "empty" in spec and required:
            self.problem(f"{where}.empty", "only applies to optional variables",
                         "remove it: an empty required variable is always an error")
        if not required:
            rule = _not_empty_then(rule) if empty == "error" else _optional(rule)
        if secret or rule_name == "postgres-url":
            rule = _hiding(rule)
        example = self.text(spec, "example", where) or ("<" + name.lower().replace("_", "-") + ">" if secret
                                                         else _EXAMPLES.get(rule_name, "..."))
        data = {"rule": rule_name, **{k: spec[k] for k in ("choices", "min", "max", "schemes", "https", "min_length",
                                                           "empty") if k in spec}}
        return Var(name, rule, required, secret, self.text(spec, "description", where), example,
                   rule_name=rule_name, spec=data)

    def rule(self, rule_name: str, spec: dict, where: str, secret: bool) -> Rule:
        if rule_name == "one-of":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices or not all(
                    isinstance(c, str | int) and not isinstance(c, bool) for c in choices):
                self.problem(f"{where}.choices", f"rule one-of needs a non-empty list of values, got {choices!r}",
                             "write e.g. 'choices: [debug, info, warn, error]'")
                return _pass
            return _choice(tuple(str(c) for c in choices))
        if rule_name == "integer":
            lo, hi = self.integer(spec, "min", where), self.integer(spec, "max", where)
            if lo is not None and hi is not None and lo > hi:
                self.problem(f"{where}.min", f"{lo} is above max {hi}", "swap them")
            return _integer(lo, hi)
        if rule_name == "url":
            schemes = spec.get("schemes", ["http", "https"])
            if not isinstance(schemes, list) or not schemes or not all(
                    isinstance(s, str) and _SCHEME_RE.match(s) for s in schemes):
                self.problem(f"{where}.schemes", f"must be a list of lowercase URL schemes, got {schemes!r}",
                             "write e.g. 'schemes: [redis, rediss]' (default: [http, https])")
                schemes = ["http", "https"]
            https = spec.get("https", "production")
            if https not in ("production", "always", "never"):
                self.problem(f"{where}.https", f"must be production, always or never, got {https!r}",
                             "write 'production' (https required when production: true), 'always' or 'never'")
                https = "production"
            example = "https://app.example.org" if "https" in schemes else f"{schemes[0]}://host.example.org"
            return _url(example, schemes=tuple(schemes), https=https, hidden=secret)
        return _NAMED_RULES[rule_name]


_NAMED_RULES: dict[str, Rule] = {
    "string": _pass, "postgres-url": _postgres_url, "port": _port, "email": _email, "hostname": _hostname,
    "absolute-path": _absolute_path, "sentry-dsn": _sentry_dsn, "datadog-api-key": _datadog_key,
}
_EXAMPLES = {"url": "https://app.example.org", "postgres-url": "postgresql://app:<db-password>@<db-host>:5432/app",
             "integer": "1", "port": "8080", "email": "ops@example.org", "hostname": "host.example.org",
             "absolute-path": "/var/app/data", "sentry-dsn": "https://<key>@<host>/<project-id>",
             "datadog-api-key": "<datadog-api-key>"}


def _optional_copy(var: Var) -> Var:
    """``var`` as an optional variable: checked only when set (an empty value counts as unset)."""
    return var if not var.required else replace(var, required=False, rule=_optional(var.rule))


def read_schema_file(path: Path) -> EnvSchema:
    """Read an app's env schema file; raise ``EnvSchemaError`` listing every problem at once.

    The format (README "The app's env schema")::

        variables:
          DATABASE_URL: {required: true, rule: postgres-url}
          NEXTAUTH_SECRET: {required: true, secret: true, min_length: 32}
          LOG_LEVEL: {rule: one-of, choices: [debug, info, warn, error]}

    Per variable: ``required`` and ``secret`` (default false), ``rule`` (one of
    ``RULE_NAMES``; default ``string``: any value) with its settings (``choices`` for
    one-of; ``min``/``max`` for integer; ``schemes`` and ``https`` for url),
    ``min_length``, ``empty`` (optional variables: ``unset``, the default, or
    ``error``), ``description`` and ``example``.
    """
    path = Path(path)
    shown = _rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env schema {shown} not found", hint="fix env_schema in the inventory") from None
    except UnicodeDecodeError:
        raise EnvSchemaError([f"{shown}: (file): not UTF-8 — save the file as UTF-8"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise EnvSchemaError([f"{shown}: {where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
                              " — fix the syntax"]) from None
    reader = _SchemaReader(shown)
    reader.duplicates(node)
    schema = reader.schema(raw)
    if reader.problems:
        raise EnvSchemaError(reader.problems)
    return schema


# ---------------------------------------------------------------- loading


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# Quoting of a binding's value, read from its original text: key, '=', then the value.
_VALUE_START_RE = re.compile(r"\s*(?:export\s+)?(?:'[^']+'|[^=#\s]+)[^\S\r\n]*=[^\S\r\n]*(.?)")
_KEY_START_RE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)[^\S\r\n]*=")


def _line(binding: Binding) -> int:
    """The line a binding's statement is on (python-dotenv counts from the blank lines before it)."""
    text = binding.original.string
    leading = text[: len(text) - len(text.lstrip())]
    return binding.original.line + leading.count("\n") - leading.count("\r\n") + leading.count("\r")


def load_env_file(path: Path) -> dict[str, str]:
    """The variables of ``path``, with ``${...}`` resolved (see the module docstring).

    NOTE: the one reader of every secret file (the app's env file, the accessories'
    variables, ``ops_env_file``): a value must never mean one thing to the app and
    another to Postgres, and no secret file may be readable by others.

    Raises ``ConfigError`` when the file is missing, accessible by group or others,
    not UTF-8, has lines that do not parse, or references an undefined variable.
    No message quotes a value.
    """
    path = Path(path)
    rel = _rel(path)
    if not path.exists():
        raise ConfigError(f"env file {rel} not found",
                          hint=f"create it from the example: cp {EXAMPLE_REL} {rel} && chmod 600 {rel}, "
                               "then replace every <placeholder>")
    if not path.is_file():
        raise ConfigError(f"env file {rel} is not a regular file", hint="point env_file at a file")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"env file {rel} is accessible by group or others (mode {mode:04o})",
                          hint=f"it holds secrets: chmod 600 {shlex.quote(rel)}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"env file {rel}: line {line} is not UTF-8",
                          hint="save the file as UTF-8") from None

    bindings = list(parse_stream(io.StringIO(text)))
    bad = []
    for b in bindings:
        if b.error:
            key = _KEY_START_RE.match(b.original.string)
            bad.append(f"line {_line(b)}" + (f" ({key.group(1)})" if key else ""))
        elif b.key is not None and b.value is None:
            bad.append(f"line {_line(b)} ({b.key} has no '=')")
    if bad:
        raise ConfigError(f"env file {rel}: cannot parse {', '.join(bad)}",
                          hint="write NAME=value, one per line; quote values with spaces or ' #' "
                               "in \"...\" and close every quote")

    raw = dotenv_values(stream=io.StringIO(text), interpolate=False)
    defined = set(raw) | set(VARS)
    resolved: dict[str, str] = {}
    for b in bindings:
        if b.key is None or b.value is None:
            continue
        start = _VALUE_START_RE.match(b.original.string)
        if start and start.group(1) == "'":
            resolved[b.key] = b.value
            continue
        out = []
        for atom in parse_variables(b.value):
            if isinstance(atom, Literal):
                out.append(atom.value)
                continue
            current = resolved.get(atom.name)
            if atom.default is not None and not current:
                out.append(atom.default)
            elif current is not None:
                out.append(current)
            else:
                # Name the reference only when it is a variable name we know of: the text
                # between ${ and } could be a fragment of a secret.
                ref = f"${{{atom.name}}}" if atom.name in defined else "${...}"
                raise ConfigError(f"env file {rel}: line {_line(b)}: {b.key} references {ref}, "
                                  "which is not set above it in the file",
                                  hint="set it on an earlier line, give a default with ${NAME:-default}, "
                                       "or single-quote the value to keep it literal")
        resolved[b.key] = "".join(out)
    return {key: resolved[key] for key in raw}


# ---------------------------------------------------------------- validation


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of two neighbours as one edit (optimal string alignment)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _typo_of(name: str, schema: EnvSchema) -> str | None:
    """The known variable ``name`` is probably a misspelling of, if any."""
    if name.upper() in schema.by_name:
        return name.upper()
    best = min(schema.by_name, key=lambda known: _distance(name.upper(), known))
    return best if 1 <= _distance(name.upper(), best) <= 2 else None


def _never_shown(var: Var) -> bool:
    return var.secret or var.rule_name == "postgres-url" or var.name in _NEVER_SHOWN


def validate(values: dict[str, str], *, production: bool, schema: EnvSchema | None = None) -> list[Problem]:
    """Every problem of ``values`` against ``schema`` (default: the built-in profile):
    errors, then warnings, in schema order.

    ``production`` requires https URLs and turns example placeholders from warnings
    into errors. Unknown variables are allowed; one that looks like a typo of a known
    one is a warning.
    """
    schema = schema or PROFILES[DEFAULT_PROFILE]
    problems: list[Problem] = []
    for var in schema.vars + schema.tool_vars:
        value = values.get(var.name)
        if value is None:
            if var.required:
                problems.append(Problem(var.name, "is required but not set",
                                        f"add {var.name}=... ({schema.reference})"))
            continue
        if var.required and not value.strip():
            problems.append(Problem(var.name, "is empty", f"give it a value ({schema.reference})"))
            continue
        if is_placeholder(value):
            hidden = _never_shown(var)
            copied = "is still the example placeholder" + ("" if hidden else f" {_show(value)}")
            if production:
                problems.append(Problem(var.name, copied, "replace it with the real value"))
                continue
            problems.append(Problem(var.name, copied, "replace it with the real value before production",
                                    severity="warning"))
        failure = var.rule(value, production)
        if failure:
            problems.append(Problem(var.name, *failure))
        elif var.secret and value and len(value) < MIN_SECRET_LENGTH:
            problems.append(Problem(var.name, f"must be at least {MIN_SECRET_LENGTH} characters (got {len(value)})",
                                    "shorter secrets cannot be masked in output; use a longer one"))
    for name in values:
        if name in schema.by_name:
            continue
        known = _typo_of(name, schema)
        if known:
            problems.append(Problem(name, f"is not a known variable; looks like a misspelling of {known}",
                                    f"rename it to {known} (names are case-sensitive), "
                                    "or ignore this if the app reads it", severity="warning"))
    # Belt and braces: no rule shows a secret, but nothing that was given one may leak.
    mask = Masker(secret_values(values, schema))
    problems = [replace(p, rule=mask(p.rule), fix=mask(p.fix)) for p in problems]
    return [p for p in problems if p.is_error] + [p for p in problems if not p.is_error]


def check_env_file(path: Path, *, production: bool, warn: Callable[[str], None] | None = None,
                   schema: EnvSchema | None = None) -> dict[str, str]:
    """Load and validate ``path`` against ``schema`` (default: the built-in profile); return
    its values or raise ``EnvFileError`` (a ``ConfigError``).

    The error's message has a count line, then one line per problem (warnings too).
    Without errors, each warning is passed to ``warn`` (default: printed to stderr).
    """
    path = Path(path)
    values = load_env_file(path)
    problems = validate(values, production=production, schema=schema)
    if any(p.is_error for p in problems):
        raise EnvFileError(path, problems, production=production)
    for p in problems:
        if warn is None:
            print(f"{_rel(path)}: {p}", file=sys.stderr, flush=True)
        else:
            warn(f"{_rel(path)}: {p}")
    return values


def secret_values(values: dict[str, str], schema: EnvSchema | None = None) -> list[str]:
    """Values to register with ``Masker``: every secret variable's of ``schema`` (default: the
    built-in profile), and the password of DATABASE_URL and of every postgres-url variable
    (as written and percent-decoded)."""
    schema = schema or PROFILES[DEFAULT_PROFILE]
    checked = schema.vars + schema.tool_vars
    found = [values[var.name] for var in checked if var.secret and values.get(var.name)]
    urls = ["DATABASE_URL"] + [var.name for var in checked if var.rule_name == "postgres-url"]
    for name in dict.fromkeys(urls):
        try:
            password = urlsplit(values.get(name) or "").password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- example


def render_example(schema: EnvSchema | None = None) -> str:
    """An example env file for ``schema`` (default: the built-in profile, whose rendering is
    ``examples/env.production.example``): every declared variable, described, with its
    example; optional ones commented out."""
    schema = schema or PROFILES[DEFAULT_PROFILE]
    lines = [
        "# The app's environment: copy to the inventory's env_file (e.g. .env.production),",
        "# chmod 600 it and replace every <placeholder>. Never commit the copy.",
        "#",
    ]
    if schema is PROFILES[DEFAULT_PROFILE]:
        lines += [
            "# Generated from ops/appenv.py (SCHEMA) by render_example(); do not edit by hand. Regenerate:",
            "#   .venv/bin/python -c 'from ops.appenv import render_example; print(render_example(), end=\"\")' \\",
            f"#     > {EXAMPLE_REL}",
        ]
    else:
        lines.append(f"# Generated from the env schema {schema.name} by ops.appenv.render_example().")
    lines += [
        "#",
        "# Syntax: python-dotenv. ' #' starts a comment in an unquoted value; ${NAME} uses a",
        "# variable set above; '...' keeps a value literal. Optional variables are commented out.",
    ]
    for title, names in schema.sections or (("Variables", tuple(var.name for var in schema.vars)),):
        lines += ["", f"# ---- {title} ----"]
        for name in names:
            var = schema.by_name[name]
            tags = ("required" if var.required else "optional") + (", secret" if var.secret else "")
            lines.append("")
            lines += textwrap.wrap(f"{name} ({tags})" + (f": {var.description}" if var.description else ""), width=88,
                                   initial_indent="# ", subsequent_indent="#   ")
            lines.append(f"{'' if var.required else '# '}{name}={var.example}")
    return "\n".join(lines) + "\n"
