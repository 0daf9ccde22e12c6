"""Load and validate the app's env file (``env_file`` in the inventory) before a deploy.

The schema below lists the variables of the app (Next.js + Prisma + PostgreSQL +
Socket.io) with one rule each. Validation collects every problem before failing; each
problem is one line naming the variable, the rule it breaks and the fix. The value of a
secret variable never appears in any message (nor does any part of ``DATABASE_URL``
other than its scheme: a malformed URL can put the password anywhere).

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
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

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


def _web_url(example: str) -> Rule:
    """An http(s) URL with a host; https in production."""
    def check(value: str, production: bool) -> Failure:
        parts = _split(value)
        if _has_space(value) or parts is None or parts.scheme not in ("http", "https") \
                or not parts.hostname or not _is_hostname(parts.hostname):
            return f"must be an http(s) URL with a host (got {_show(value)})", f"write e.g. {example}"
        if production and parts.scheme != "https":
            return (f"must use https in production (got {_show(value)})",
                    f"write https://{parts.netloc}{parts.path}; TLS ends at the proxy")
        return None
    return check


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
        "postgresql://app:<db-password>@<db-host>:5432/app"),
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


def _typo_of(name: str) -> str | None:
    """The known variable ``name`` is probably a misspelling of, if any."""
    if name.upper() in VARS:
        return name.upper()
    best = min(SCHEMA, key=lambda var: _distance(name.upper(), var.name))
    return best.name if 1 <= _distance(name.upper(), best.name) <= 2 else None


def validate(values: dict[str, str], *, production: bool) -> list[Problem]:
    """Every problem of ``values`` against ``SCHEMA``: errors, then warnings, in schema order.

    ``production`` requires https URLs and turns example placeholders from warnings
    into errors. Unknown variables are allowed; one that looks like a typo of a known
    one is a warning.
    """
    problems: list[Problem] = []
    for var in SCHEMA:
        value = values.get(var.name)
        if value is None:
            if var.required:
                problems.append(Problem(var.name, "is required but not set",
                                        f"add {var.name}=... (see {EXAMPLE_REL})"))
            continue
        if var.required and not value.strip():
            problems.append(Problem(var.name, "is empty", f"give it a value (see {EXAMPLE_REL})"))
            continue
        if is_placeholder(value):
            hidden = var.secret or var.name in _NEVER_SHOWN
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
        if name in VARS:
            continue
        known = _typo_of(name)
        if known:
            problems.append(Problem(name, f"is not a known variable; looks like a misspelling of {known}",
                                    f"rename it to {known} (names are case-sensitive), "
                                    "or ignore this if the app reads it", severity="warning"))
    # Belt and braces: no rule shows a secret, but nothing that was given one may leak.
    mask = Masker(secret_values(values))
    problems = [replace(p, rule=mask(p.rule), fix=mask(p.fix)) for p in problems]
    return [p for p in problems if p.is_error] + [p for p in problems if not p.is_error]


def check_env_file(path: Path, *, production: bool,
                   warn: Callable[[str], None] | None = None) -> dict[str, str]:
    """Load and validate ``path``; return its values or raise ``EnvFileError`` (a ``ConfigError``).

    The error's message has a count line, then one line per problem (warnings too).
    Without errors, each warning is passed to ``warn`` (default: printed to stderr).
    """
    path = Path(path)
    values = load_env_file(path)
    problems = validate(values, production=production)
    if any(p.is_error for p in problems):
        raise EnvFileError(path, problems, production=production)
    for p in problems:
        if warn is None:
            print(f"{_rel(path)}: {p}", file=sys.stderr, flush=True)
        else:
            warn(f"{_rel(path)}: {p}")
    return values


def secret_values(values: dict[str, str]) -> list[str]:
    """Values to register with ``Masker``: every secret variable's, and DATABASE_URL's password
    (as written and percent-decoded)."""
    found = [values[var.name] for var in SCHEMA if var.secret and values.get(var.name)]
    try:
        password = urlsplit(values.get("DATABASE_URL") or "").password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- example


def render_example() -> str:
    """The text of ``examples/env.production.example``: every variable of ``SCHEMA``,
    described, with its example; optional ones commented out."""
    lines = [
        "# The app's environment: copy to the inventory's env_file (e.g. .env.production),",
        "# chmod 600 it and replace every <placeholder>. Never commit the copy.",
        "#",
        "# Generated from ops/appenv.py (SCHEMA) by render_example(); do not edit by hand. Regenerate:",
        "#   .venv/bin/python -c 'from ops.appenv import render_example; print(render_example(), end=\"\")' \\",
        f"#     > {EXAMPLE_REL}",
        "#",
        "# Syntax: python-dotenv. ' #' starts a comment in an unquoted value; ${NAME} uses a",
        "# variable set above; '...' keeps a value literal. Optional variables are commented out.",
    ]
    for title, names in SECTIONS:
        lines += ["", f"# ---- {title} ----"]
        for name in names:
            var = VARS[name]
            tags = ("required" if var.required else "optional") + (", secret" if var.secret else "")
            lines.append("")
            lines += textwrap.wrap(f"{name} ({tags}): {var.description}", width=88,
                                   initial_indent="# ", subsequent_indent="#   ")
            lines.append(f"{'' if var.required else '# '}{name}={var.example}")
    return "\n".join(lines) + "\n"
