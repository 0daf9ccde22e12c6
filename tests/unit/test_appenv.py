"""ops/appenv.py: the app's env file is loaded, validated and never leaks a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.appenv import (
    EXAMPLE_PATH,
    SCHEMA,
    SECTIONS,
    VARS,
    EnvFileError,
    Problem,
    check_env_file,
    is_placeholder,
    load_env_file,
    render_example,
    secret_values,
    validate,
)
from ops.errors import ConfigError
from ops.masking import Masker

DB_PASSWORD = "Db-pass-0123456789"
NEXTAUTH_SECRET = "q9Vb3Xr7Lm2Kp8Zt4Wn6Yc1Hd5Jf0GsA"
SMTP_PASSWORD = "smtp-pass-abcdef"
SENTRY_DSN = "https://0123456789abcdef0123456789abcdef@o123456.ingest.sentry.io/4505678"
DATADOG_API_KEY = "0123456789abcdef0123456789abcdef"

VALID = {
    "DATABASE_URL": f"postgresql://athlete:{DB_PASSWORD}@10.0.0.21:5432/athlete",
    "PRISMA_QUERY_ENGINE_TYPE": "binary",
    "NEXTAUTH_URL": "https://athlete.example.org",
    "NEXTAUTH_SECRET": NEXTAUTH_SECRET,
    "NEXT_PUBLIC_SOCKET_URL": "https://athlete.example.org",
    "NEXT_PUBLIC_SOCKET_NAMESPACE": "/socket.io",
    "FILE_UPLOAD_DIR": "/var/app/uploads",
    "MAX_FILE_SIZE": "10485760",
    "SMTP_HOST": "smtp.gmail.com",
    "SMTP_PORT": "587",
    "SMTP_USER": "noreply@athlete.example.org",
    "SMTP_PASSWORD": SMTP_PASSWORD,
    "SENTRY_DSN": SENTRY_DSN,
    "SENTRY_ENVIRONMENT": "production",
    "DATADOG_API_KEY": DATADOG_API_KEY,
    "POSTGRES_USER": "athlete",
    "POSTGRES_PASSWORD": DB_PASSWORD,
    "POSTGRES_DB": "athlete",
}
REQUIRED = ["DATABASE_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "NEXT_PUBLIC_SOCKET_URL",
            "NEXT_PUBLIC_SOCKET_NAMESPACE", "FILE_UPLOAD_DIR", "MAX_FILE_SIZE", "SMTP_HOST", "SMTP_PORT",
            "SMTP_USER", "SMTP_PASSWORD"]
OPTIONAL = ["PRISMA_QUERY_ENGINE_TYPE", "SENTRY_DSN", "SENTRY_ENVIRONMENT", "DATADOG_API_KEY",
            "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
SECRETS = ["NEXTAUTH_SECRET", "SMTP_PASSWORD", "SENTRY_DSN", "DATADOG_API_KEY", "POSTGRES_PASSWORD"]
URL_FIX = ("write postgresql://USER:PASSWORD@HOST:5432/DBNAME and percent-encode special characters in the "
           "password (@ : / ? # % as %40 %3A %2F %3F %23 %25)")
DSN_FIX = "copy the DSN from Sentry (Project Settings > Client Keys); shape https://<key>@<host>/<project id>"


def valid(**changes: str | None) -> dict[str, str]:
    values = dict(VALID)
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def lines(values: dict[str, str], *, production: bool = True) -> list[str]:
    return [str(p) for p in validate(values, production=production)]


def write_env(tmp_path: Path, text: str, mode: int = 0o600, name: str = "app.env") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def env_text(values: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items())


# ---------------------------------------------------------------- schema


def test_the_schema_is_exactly_the_seed_variables_plus_the_postgres_accessory_extras():
    assert [var.name for var in SCHEMA] == [
        "DATABASE_URL", "PRISMA_QUERY_ENGINE_TYPE", "NEXTAUTH_URL", "NEXTAUTH_SECRET",
        "NEXT_PUBLIC_SOCKET_URL", "NEXT_PUBLIC_SOCKET_NAMESPACE", "FILE_UPLOAD_DIR", "MAX_FILE_SIZE",
        "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SENTRY_DSN", "SENTRY_ENVIRONMENT",
        "DATADOG_API_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
    assert [var.name for var in SCHEMA if var.required] == REQUIRED
    assert [var.name for var in SCHEMA if not var.required] == OPTIONAL
    assert [var.name for var in SCHEMA if var.secret] == SECRETS


def test_every_variable_is_described_and_every_secret_example_is_a_placeholder():
    assert all(var.description and var.example for var in SCHEMA)
    assert [var.name for var in SCHEMA if is_placeholder(var.example)] == [
        "DATABASE_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "NEXT_PUBLIC_SOCKET_URL", "SMTP_USER", "SMTP_PASSWORD",
        "SENTRY_DSN", "DATADOG_API_KEY", "POSTGRES_PASSWORD"]
    assert all(is_placeholder(VARS[name].example) for name in SECRETS)


def test_the_example_sections_list_every_variable_once():
    names = [name for _, section in SECTIONS for name in section]
    assert sorted(names) == sorted(VARS)
    assert len(names) == len(set(names))


# ---------------------------------------------------------------- loading


def test_a_missing_env_file_is_an_error_naming_it_and_how_to_create_it_from_the_example(tmp_path):
    path = tmp_path / ".env.production"
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value) == (
        f"env file {path} not found — create it from the example: cp examples/env.production.example {path} "
        f"&& chmod 600 {path}, then replace every <placeholder>")


def test_a_directory_is_not_an_env_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_env_file(tmp_path)
    assert str(err.value) == f"env file {tmp_path} is not a regular file — point env_file at a file"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_a_file_accessible_by_group_or_others_is_refused_with_chmod_600_as_the_fix(tmp_path, mode):
    path = write_env(tmp_path, env_text(VALID), mode)
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value) == (f"env file {path} is accessible by group or others (mode {mode:04o})"
                              f" — it holds secrets: chmod 600 {path}")
    assert DB_PASSWORD not in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_file_only_its_owner_can_read_is_accepted(tmp_path, mode):
    path = write_env(tmp_path, env_text(VALID), mode)
    assert load_env_file(path) == VALID


def test_a_path_inside_the_project_is_named_relative_to_it():
    with pytest.raises(ConfigError) as err:
        load_env_file(EXAMPLE_PATH.parent / "no-such.env")
    assert str(err.value).startswith("env file examples/no-such.env not found — ")


def test_a_line_that_does_not_parse_is_reported_by_number_without_its_text(tmp_path):
    path = write_env(tmp_path, "# app\nSMTP_HOST=smtp.gmail.com\nSMTP_PASSWORD \"hunter2-secret\"\nSMTP_PORT=587\n")
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value) == (
        f"env file {path}: cannot parse line 3 — write NAME=value, one per line; quote values with spaces "
        "or ' #' in \"...\" and close every quote")
    assert "hunter2-secret" not in str(err.value)


def test_an_unclosed_quote_is_reported_with_its_line_number_and_variable_name(tmp_path):
    path = write_env(tmp_path, "SMTP_HOST=smtp.gmail.com\n\n\nNEXTAUTH_SECRET=\"abcdefgh-secret\nSMTP_PORT=587\n")
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value).startswith(f"env file {path}: cannot parse line 4 (NEXTAUTH_SECRET) — ")
    assert "abcdefgh-secret" not in str(err.value)


def test_every_bad_line_is_listed_including_a_name_without_equals_sign(tmp_path):
    path = write_env(tmp_path, "SMTP_HOST=smtp.gmail.com\n\nSMTP_PORT\r\nA=1\n  \n\nnot valid at all\n")
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value).startswith(f"env file {path}: cannot parse line 3 (SMTP_PORT has no '='), line 7 — ")


def test_a_file_that_is_not_utf8_is_reported_with_the_line_number(tmp_path):
    path = tmp_path / "app.env"
    path.write_bytes(b"A=1\nB=2\nC=caf\xe9\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value) == f"env file {path}: line 3 is not UTF-8 — save the file as UTF-8"


def test_an_inline_comment_after_whitespace_is_dropped_as_dotenv_does(tmp_path):
    path = write_env(tmp_path, "MAX_FILE_SIZE=10485760  # 10MB\nSMTP_PORT=587\t# STARTTLS\nEMPTY= # nothing\n")
    assert load_env_file(path) == {"MAX_FILE_SIZE": "10485760", "SMTP_PORT": "587", "EMPTY": ""}


def test_a_hash_without_whitespace_before_it_or_inside_quotes_is_part_of_the_value(tmp_path):
    path = write_env(tmp_path, "A=abc#def\nB=\"abc # def\"\nC='x # y'\n")
    assert load_env_file(path) == {"A": "abc#def", "B": "abc # def", "C": "x # y"}


def test_a_quoted_size_keeps_its_comment_and_fails_the_integer_rule(tmp_path):
    path = write_env(tmp_path, env_text(valid(MAX_FILE_SIZE='"10485760  # 10MB"')))
    values = load_env_file(path)
    assert values["MAX_FILE_SIZE"] == "10485760  # 10MB"
    assert lines(values) == ["MAX_FILE_SIZE: must be a positive integer number of bytes (got '10485760  # 10MB')"
                             " — write bytes without units, e.g. 10485760 for 10 MB"]


def test_export_prefixes_crlf_line_endings_and_a_bom_are_accepted(tmp_path):
    path = tmp_path / "app.env"
    path.write_bytes("\ufeffexport A=1\r\nB=\"two\"\r\n".encode())
    path.chmod(0o600)
    assert load_env_file(path) == {"A": "1", "B": "two"}


def test_the_last_of_two_lines_for_one_name_wins(tmp_path):
    path = write_env(tmp_path, "A=1\nB=x\nA=2\n")
    assert load_env_file(path) == {"A": "2", "B": "x"}


# ---------------------------------------------------------------- interpolation


def test_a_reference_to_a_variable_set_above_is_expanded_unquoted_and_double_quoted(tmp_path):
    path = write_env(tmp_path, "HOST=athlete.example.org\nNEXTAUTH_URL=https://${HOST}\n"
                               "NEXT_PUBLIC_SOCKET_URL=\"https://${HOST}/ws\"\n")
    assert load_env_file(path) == {"HOST": "athlete.example.org", "NEXTAUTH_URL": "https://athlete.example.org",
                                   "NEXT_PUBLIC_SOCKET_URL": "https://athlete.example.org/ws"}


def test_a_default_is_used_when_the_variable_is_unset_or_empty(tmp_path):
    path = write_env(tmp_path, "EMPTY=\nSET=yes\nA=${UNSET:-d1}\nB=${EMPTY:-d2}\nC=${SET:-d3}\nD=${EMPTY}\n")
    assert load_env_file(path) == {"EMPTY": "", "SET": "yes", "A": "d1", "B": "d2", "C": "yes", "D": ""}


def test_a_single_quoted_value_is_literal(tmp_path):
    path = write_env(tmp_path, "HOST=h\nSMTP_PASSWORD='pa${HOST}ss'\n")
    assert load_env_file(path)["SMTP_PASSWORD"] == "pa${HOST}ss"


def test_a_bare_dollar_name_is_not_expanded(tmp_path):
    path = write_env(tmp_path, "HOST=h\nA=$HOST\n")
    assert load_env_file(path)["A"] == "$HOST"


def test_the_operators_shell_environment_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_TEST_FROM_SHELL", "leaked")
    path = write_env(tmp_path, "A=${OPS_TEST_FROM_SHELL:-default}\n")
    assert load_env_file(path) == {"A": "default"}


def test_a_reference_to_a_variable_set_only_below_is_an_error_naming_it_and_the_line(tmp_path):
    path = write_env(tmp_path, "A=1\n\n# the site\n\nNEXTAUTH_URL=https://${HOST}\nHOST=h\n")
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value) == (
        f"env file {path}: line 5: NEXTAUTH_URL references ${{HOST}}, which is not set above it in the file — "
        "set it on an earlier line, give a default with ${NAME:-default}, or single-quote the value to keep it "
        "literal")


def test_a_reference_that_could_be_part_of_a_secret_is_not_quoted_in_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("xK9-secret-part", "from shell")
    path = write_env(tmp_path, "SMTP_PASSWORD=ab${xK9-secret-part}cd\n")
    with pytest.raises(ConfigError) as err:
        load_env_file(path)
    assert str(err.value).startswith(f"env file {path}: line 1: SMTP_PASSWORD references ${{...}}, which is not ")
    assert "xK9" not in str(err.value)


# ---------------------------------------------------------------- rules


def test_a_complete_valid_file_has_no_problems_in_production_or_not():
    assert validate(VALID, production=True) == []
    assert validate(VALID, production=False) == []


def test_only_the_required_variables_are_needed():
    values = {name: VALID[name] for name in REQUIRED}
    assert validate(values, production=True) == []


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_required_variable_is_named_with_where_to_find_an_example(name):
    assert lines(valid(**{name: None})) == [
        f"{name}: is required but not set — add {name}=... (see examples/env.production.example)"]


@pytest.mark.parametrize("name", REQUIRED)
def test_an_empty_required_variable_is_an_error(name):
    assert lines(valid(**{name: " "})) == [
        f"{name}: is empty — give it a value (see examples/env.production.example)"]


@pytest.mark.parametrize("name", ["PRISMA_QUERY_ENGINE_TYPE", "SENTRY_DSN", "DATADOG_API_KEY"])
def test_an_empty_optional_variable_counts_as_unset(name):
    assert validate(valid(**{name: ""}), production=True) == []


@pytest.mark.parametrize("name", OPTIONAL)
def test_an_absent_optional_variable_is_fine(name):
    assert validate(valid(**{name: None}), production=True) == []


@pytest.mark.parametrize(("name", "value"), [
    ("DATABASE_URL", "postgres://athlete:Db-pass-0123456789@db:5432/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db/athlete"),
    ("DATABASE_URL", "postgresql://athlete:p%40ss%2Fw0rd@db_1:6432/athlete?schema=public&sslmode=require"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@[2001:db8::1]:5432/athlete"),
    ("PRISMA_QUERY_ENGINE_TYPE", "library"),
    ("NEXTAUTH_URL", "https://athlete.example.org:8443/auth"),
    ("NEXT_PUBLIC_SOCKET_URL", "https://10.0.0.11"),
    ("NEXT_PUBLIC_SOCKET_NAMESPACE", "/"),
    ("NEXT_PUBLIC_SOCKET_NAMESPACE", "/chat"),
    ("FILE_UPLOAD_DIR", "/data"),
    ("MAX_FILE_SIZE", "1"),
    ("SMTP_HOST", "10.0.0.5"),
    ("SMTP_HOST", "mail-1.example.org."),
    ("SMTP_PORT", "1"),
    ("SMTP_PORT", "65535"),
    ("SENTRY_DSN", "https://abc123@sentry.example.org/path/prefix/42"),
    ("SENTRY_DSN", "https://public:legacy-secret@sentry.example.org/7"),
    ("SENTRY_ENVIRONMENT", "staging-eu"),
    ("POSTGRES_USER", "app"),
    ("POSTGRES_PASSWORD", "abcd"),
    ("POSTGRES_DB", "a" * 63),
])
def test_a_value_that_keeps_the_rule_passes(name, value):
    assert validate(valid(**{name: value}), production=True) == []


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("DATABASE_URL", "mysql://athlete:Db-pass-0123456789@db/athlete",
     f"must be a postgres:// or postgresql:// URL (got scheme 'mysql') — {URL_FIX}"),
    ("DATABASE_URL", "athlete:Db-pass-0123456789@db/athlete", f"must be a postgresql:// URL — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete@db/athlete",
     f"must include a user and a password (USER:PASSWORD@HOST) — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://:Db-pass-0123456789@db/athlete",
     f"must include a user and a password (USER:PASSWORD@HOST) — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@/athlete", f"must include a host — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db:54x2/athlete",
     f"has a port that is not an integer 1-65535 — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db:70000/athlete",
     f"has a port that is not an integer 1-65535 — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db:0/athlete",
     f"has a port that is not an integer 1-65535 — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db:5432",
     f"must end with a database name (/DBNAME) — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db:5432/",
     f"must end with a database name (/DBNAME) — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass-0123456789@db/a/b",
     f"must have a single database name after the host (/DBNAME) — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:Db-pass 0123456789@db/athlete", f"must not contain whitespace — {URL_FIX}"),
    ("DATABASE_URL", "postgresql://athlete:abc@db/athlete",
     "password must be at least 4 characters (shorter values cannot be masked) — generate one with: "
     "openssl rand -hex 24"),
    ("PRISMA_QUERY_ENGINE_TYPE", "Binary", "must be one of binary, library (got 'Binary') — write binary or library"),
    ("NEXTAUTH_URL", "athlete.example.org",
     "must be an http(s) URL with a host (got 'athlete.example.org') — write e.g. https://app.example.org"),
    ("NEXTAUTH_URL", "ftp://athlete.example.org",
     "must be an http(s) URL with a host (got 'ftp://athlete.example.org') — write e.g. https://app.example.org"),
    ("NEXTAUTH_URL", "https://",
     "must be an http(s) URL with a host (got 'https://') — write e.g. https://app.example.org"),
    ("NEXTAUTH_URL", "https://athlete example.org",
     "must be an http(s) URL with a host (got 'https://athlete example.org') — write e.g. https://app.example.org"),
    ("NEXTAUTH_URL", "https://athlete.example.org:99999",
     "must be an http(s) URL with a host (got 'https://athlete.example.org:99999') — write e.g. "
     "https://app.example.org"),
    ("NEXT_PUBLIC_SOCKET_URL", "wss://athlete.example.org",
     "must be an http(s) URL with a host (got 'wss://athlete.example.org') — write e.g. https://app.example.org"),
    ("NEXT_PUBLIC_SOCKET_NAMESPACE", "socket.io",
     "must start with '/' and contain no spaces (got 'socket.io') — write e.g. /socket.io"),
    ("NEXT_PUBLIC_SOCKET_NAMESPACE", "/my socket",
     "must start with '/' and contain no spaces (got '/my socket') — write e.g. /socket.io"),
    ("FILE_UPLOAD_DIR", "uploads",
     "must be an absolute directory path, not the root (got 'uploads') — write e.g. /var/app/uploads "
     "(inside the container; mount a volume there)"),
    ("FILE_UPLOAD_DIR", "/",
     "must be an absolute directory path, not the root (got '/') — write e.g. /var/app/uploads "
     "(inside the container; mount a volume there)"),
    ("MAX_FILE_SIZE", "10MB",
     "must be a positive integer number of bytes (got '10MB') — write bytes without units, e.g. 10485760 for 10 MB"),
    ("MAX_FILE_SIZE", "0",
     "must be a positive integer number of bytes (got '0') — write bytes without units, e.g. 10485760 for 10 MB"),
    ("MAX_FILE_SIZE", "-5",
     "must be a positive integer number of bytes (got '-5') — write bytes without units, e.g. 10485760 for 10 MB"),
    ("MAX_FILE_SIZE", "10_485_760",
     "must be a positive integer number of bytes (got '10_485_760') — write bytes without units, e.g. 10485760 "
     "for 10 MB"),
    ("SMTP_HOST", "smtp://smtp.gmail.com",
     "must be a host name or IP address (got 'smtp://smtp.gmail.com') — write only the host, without scheme or "
     "port, e.g. smtp.gmail.com"),
    ("SMTP_HOST", "smtp.gmail.com:587",
     "must be a host name or IP address (got 'smtp.gmail.com:587') — write only the host, without scheme or "
     "port, e.g. smtp.gmail.com"),
    ("SMTP_HOST", "-bad-.example.org",
     "must be a host name or IP address (got '-bad-.example.org') — write only the host, without scheme or "
     "port, e.g. smtp.gmail.com"),
    ("SMTP_PORT", "0", "must be an integer port 1-65535 (got '0') — write e.g. 587 (STARTTLS) or 465 (TLS)"),
    ("SMTP_PORT", "65536", "must be an integer port 1-65535 (got '65536') — write e.g. 587 (STARTTLS) or 465 (TLS)"),
    ("SMTP_PORT", "smtp", "must be an integer port 1-65535 (got 'smtp') — write e.g. 587 (STARTTLS) or 465 (TLS)"),
    ("SENTRY_DSN", "http://abc123@sentry.example.org/42", f"must be an https:// URL — {DSN_FIX}"),
    ("SENTRY_DSN", "sentry.example.org/42", f"must be an https:// URL — {DSN_FIX}"),
    ("SENTRY_DSN", "https://sentry.example.org/42", f"must include the public key before '@' — {DSN_FIX}"),
    ("SENTRY_DSN", "https://abc123@sentry.example.org/project",
     f"must end with the numeric project id (/<project id>) — {DSN_FIX}"),
    ("SENTRY_DSN", "https://abc123@sentry.example.org", f"must end with the numeric project id (/<project id>) — {DSN_FIX}"),
    ("SENTRY_ENVIRONMENT", "",
     "must be a non-empty name without spaces or '/', at most 64 characters (got '') — write e.g. production or "
     "staging, or remove the line"),
    ("SENTRY_ENVIRONMENT", "prod/eu",
     "must be a non-empty name without spaces or '/', at most 64 characters (got 'prod/eu') — write e.g. "
     "production or staging, or remove the line"),
    ("DATADOG_API_KEY", "0123456789ABCDEF0123456789ABCDEF",
     "must be 32 lowercase hexadecimal characters (got 32 characters) — copy an API key from Datadog "
     "(Organization Settings > API Keys), or remove the line"),
    ("DATADOG_API_KEY", "0123456789abcdef",
     "must be 32 lowercase hexadecimal characters (got 16 characters) — copy an API key from Datadog "
     "(Organization Settings > API Keys), or remove the line"),
    ("POSTGRES_USER", "",
     "must be a non-empty name of at most 63 bytes (got '') — write e.g. app; usually the same as in DATABASE_URL"),
    ("POSTGRES_DB", "a" * 64,
     f"must be a non-empty name of at most 63 bytes (got '{'a' * 57}...') — write e.g. app; usually the same as "
     "in DATABASE_URL"),
    ("POSTGRES_PASSWORD", "",
     "must be at least 4 characters (got 0) — use the password in DATABASE_URL; generate one with: "
     "openssl rand -hex 24"),
    ("POSTGRES_PASSWORD", "abc",
     "must be at least 4 characters (got 3) — use the password in DATABASE_URL; generate one with: "
     "openssl rand -hex 24"),
    ("NEXTAUTH_SECRET", "short-secret",
     "must be at least 32 characters (got 12) — generate one with: openssl rand -base64 32"),
    ("SMTP_PASSWORD", "abc",
     "must be at least 4 characters (got 3) — shorter secrets cannot be masked in output; use a longer one"),
])
def test_a_value_that_breaks_the_rule_is_named_with_the_rule_and_the_fix(name, value, problem):
    for production in (True, False):
        assert lines(valid(**{name: value}), production=production) == [f"{name}: {problem}"]


def test_the_nextauth_secret_message_reads_as_documented():
    assert str(validate(valid(NEXTAUTH_SECRET="twelve-chars"), production=True)[0]) == (
        "NEXTAUTH_SECRET: must be at least 32 characters (got 12) — generate one with: openssl rand -base64 32")


def test_a_secret_of_exactly_32_characters_is_enough():
    assert validate(valid(NEXTAUTH_SECRET="x" * 32), production=True) == []


@pytest.mark.parametrize("name", ["NEXTAUTH_URL", "NEXT_PUBLIC_SOCKET_URL"])
def test_http_urls_are_allowed_outside_production_and_refused_in_production(name):
    values = valid(**{name: "http://athlete.example.org:3000/app"})
    assert validate(values, production=False) == []
    assert lines(values, production=True) == [
        f"{name}: must use https in production (got 'http://athlete.example.org:3000/app') — "
        "write https://athlete.example.org:3000/app; TLS ends at the proxy"]


def test_the_problem_type_carries_name_rule_and_fix():
    [problem] = validate(valid(SMTP_PORT="0"), production=True)
    assert problem == Problem("SMTP_PORT", "must be an integer port 1-65535 (got '0')",
                              "write e.g. 587 (STARTTLS) or 465 (TLS)", "error")
    assert problem.is_error


def test_errors_come_first_then_warnings():
    values = valid(SMTP_PORT="0", NEXTAUTH_SECRT="x", NEXTAUTH_URL="https://your-domain.com")
    assert [(p.name, p.severity) for p in validate(values, production=False)] == [
        ("SMTP_PORT", "error"), ("NEXTAUTH_URL", "warning"), ("NEXTAUTH_SECRT", "warning")]


# ---------------------------------------------------------------- placeholders


@pytest.mark.parametrize(("name", "value"), [
    ("DATABASE_URL", "postgresql://user:password@host:5432/db"),
    ("DATABASE_URL", "postgresql://app:<db-password>@db:5432/app"),
    ("NEXTAUTH_URL", "https://your-domain.com"),
    ("NEXTAUTH_SECRET", "<generate-32-char-random>"),
    ("NEXTAUTH_SECRET", "changeme-changeme-changeme-changeme"),
    ("NEXT_PUBLIC_SOCKET_URL", "https://your-domain.com"),
    ("SMTP_USER", "your-email@gmail.com"),
    ("SMTP_PASSWORD", "app-password"),
    ("SENTRY_DSN", "<sentry-project-url>"),
    ("DATADOG_API_KEY", "<optional>"),
    ("POSTGRES_PASSWORD", "<db-password>"),
])
def test_a_placeholder_copied_from_the_example_is_an_error_in_production(name, value):
    shown = "" if name in SECRETS or name == "DATABASE_URL" else f" {value!r}"
    assert lines(valid(**{name: value}), production=True) == [
        f"{name}: is still the example placeholder{shown} — replace it with the real value"]


def test_a_placeholder_is_only_a_warning_outside_production_and_the_rule_still_applies():
    values = valid(NEXTAUTH_URL="https://your-domain.com", NEXTAUTH_SECRET="<generate-32-char-random>")
    assert lines(values, production=False) == [
        "NEXTAUTH_SECRET: must be at least 32 characters (got 25) — generate one with: openssl rand -base64 32",
        "warning: NEXTAUTH_URL: is still the example placeholder 'https://your-domain.com' — replace it with the "
        "real value before production",
        "warning: NEXTAUTH_SECRET: is still the example placeholder — replace it with the real value before "
        "production",
    ]


def test_real_values_that_merely_contain_symbols_are_not_placeholders():
    assert not is_placeholder("P@ss<W0RD>!x")
    assert not is_placeholder("postgresql://app:hostpassword@db/app")
    assert is_placeholder("https://<key>@<host>/<project-id>")


# ---------------------------------------------------------------- typos


@pytest.mark.parametrize(("typo", "known"), [
    ("NEXTAUTH_SECRT", "NEXTAUTH_SECRET"),       # one letter dropped
    ("NEXTAUHT_URL", "NEXTAUTH_URL"),            # two letters swapped
    ("SMTP_PASWORD", "SMTP_PASSWORD"),
    ("DATABSE_URLL", "DATABASE_URL"),            # two edits
    ("nextauth_secret", "NEXTAUTH_SECRET"),      # wrong case
])
def test_a_name_that_looks_like_a_typo_of_a_known_variable_gets_a_warning(typo, known):
    assert lines(valid(**{typo: "x"}), production=True) == [
        f"warning: {typo}: is not a known variable; looks like a misspelling of {known} — rename it to {known} "
        "(names are case-sensitive), or ignore this if the app reads it"]


@pytest.mark.parametrize("name", ["NODE_ENV", "REDIS_URL", "NEXTAUTH_SEC", "SMTP_FROM", "SENTRY_ORG",
                                  "NEXTAUTH_URL_INTERNAL", "SHADOW_DATABASE_URL"])
def test_other_unknown_variables_are_allowed_silently(name):
    assert validate(valid(**{name: "x"}), production=True) == []


def test_a_typo_beside_the_missing_variable_shows_both_the_error_and_the_hint():
    values = valid(NEXTAUTH_SECRET=None, NEXTAUTH_SECRT=NEXTAUTH_SECRET)
    assert lines(values) == [
        "NEXTAUTH_SECRET: is required but not set — add NEXTAUTH_SECRET=... (see examples/env.production.example)",
        "warning: NEXTAUTH_SECRT: is not a known variable; looks like a misspelling of NEXTAUTH_SECRET — rename it "
        "to NEXTAUTH_SECRET (names are case-sensitive), or ignore this if the app reads it",
    ]


# ---------------------------------------------------------------- secrets


BAD_SECRETS = [
    ("NEXTAUTH_SECRET", "Zq-secret-marker"),
    ("NEXTAUTH_SECRET", "<Zq-secret-marker>"),
    ("SMTP_PASSWORD", "Zq-secret-marker-app-password"),
    ("SENTRY_DSN", "http://Zq-secret-marker@sentry.example.org/1"),
    ("SENTRY_DSN", "https://Zq-secret-marker@sentry.example.org/x"),
    ("SENTRY_DSN", "https://Zq-secret-marker@<host>/1"),
    ("DATADOG_API_KEY", "Zq-secret-marker"),
    ("POSTGRES_PASSWORD", "Zq-secret-marker changeme"),
    ("POSTGRES_PASSWORD", "Zq"),
    ("DATABASE_URL", "mysql://athlete:Zq-secret-marker@db/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret/marker@db/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret#marker@db/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret marker@db/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret-marker@db:port/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret-marker@db"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret-marker@your-domain.com/athlete"),
    ("DATABASE_URL", "postgresql://athlete:Zq-secret-marker@[::1/athlete"),
]


@pytest.mark.parametrize(("name", "value"), BAD_SECRETS)
def test_a_secret_value_never_appears_in_any_problem_in_either_mode(name, value):
    for production in (True, False):
        problems = validate(valid(**{name: value}), production=production)
        assert [p.name for p in problems] == [name]
        for fragment in ("Zq", "marker"):
            assert fragment not in str(problems[0])


@pytest.mark.parametrize(("name", "value"), BAD_SECRETS)
def test_a_secret_value_never_appears_in_the_env_file_error(tmp_path, name, value):
    path = write_env(tmp_path, env_text({k: f'"{v}"' for k, v in valid(**{name: value}).items()}))
    with pytest.raises(EnvFileError) as err:
        check_env_file(path, production=True)
    assert "Zq" not in str(err.value)
    assert "marker" not in str(err.value)


def test_a_non_secret_value_that_contains_a_secret_is_masked_in_its_message():
    values = valid(SMTP_HOST=f"{SMTP_PASSWORD}.example.org:25")
    assert lines(values) == [
        "SMTP_HOST: must be a host name or IP address (got '********.example.org:25') — write only the host, "
        "without scheme or port, e.g. smtp.gmail.com"]


def test_secret_values_are_the_secret_variables_and_the_database_password():
    assert secret_values(VALID) == [NEXTAUTH_SECRET, SMTP_PASSWORD, SENTRY_DSN, DATADOG_API_KEY, DB_PASSWORD]


def test_secret_values_has_the_database_password_as_written_and_decoded():
    values = {"DATABASE_URL": "postgresql://app:p%40ss%2Fw0rd@db/app", "NEXTAUTH_SECRET": "n" * 32}
    assert secret_values(values) == ["n" * 32, "p%40ss%2Fw0rd", "p@ss/w0rd"]
    mask = Masker(secret_values(values))
    assert mask("url=postgresql://app:p%40ss%2Fw0rd@db/app PGPASSWORD=p@ss/w0rd") == \
        "url=postgresql://app:********@db/app PGPASSWORD=********"


def test_secret_values_skips_unset_and_empty_secrets_and_a_broken_url():
    assert secret_values({"DATABASE_URL": "postgresql://app:x@[::1/app", "SMTP_PASSWORD": "",
                          "SMTP_USER": "not-a-secret"}) == []
    assert secret_values({}) == []


# ---------------------------------------------------------------- check_env_file


def test_check_env_file_returns_the_values_of_a_valid_file(tmp_path):
    path = write_env(tmp_path, "# app\n" + env_text(VALID) + "EXTRA_FEATURE_FLAG=on  # app-specific\n")
    assert check_env_file(path, production=True) == {**VALID, "EXTRA_FEATURE_FLAG": "on"}


def test_check_env_file_raises_one_config_error_with_a_count_and_a_line_per_problem(tmp_path):
    values = valid(NEXTAUTH_SECRET="Zq-short-secret", NEXTAUTH_URL="http://athlete.example.org",
                   MAX_FILE_SIZE=None, NEXTAUTH_SECRT="x")
    path = write_env(tmp_path, env_text(values))
    with pytest.raises(ConfigError) as err:
        check_env_file(path, production=True)
    assert isinstance(err.value, EnvFileError)
    assert str(err.value) == "\n".join([
        f"{path}: 3 problems, 1 warning (production rules):",
        "  NEXTAUTH_URL: must use https in production (got 'http://athlete.example.org') — write "
        "https://athlete.example.org; TLS ends at the proxy",
        "  NEXTAUTH_SECRET: must be at least 32 characters (got 15) — generate one with: openssl rand -base64 32",
        "  MAX_FILE_SIZE: is required but not set — add MAX_FILE_SIZE=... (see examples/env.production.example)",
        "  warning: NEXTAUTH_SECRT: is not a known variable; looks like a misspelling of NEXTAUTH_SECRET — rename "
        "it to NEXTAUTH_SECRET (names are case-sensitive), or ignore this if the app reads it",
    ])
    assert [p.name for p in err.value.problems] == ["NEXTAUTH_URL", "NEXTAUTH_SECRET", "MAX_FILE_SIZE",
                                                    "NEXTAUTH_SECRT"]
    assert "Zq" not in str(err.value)


def test_check_env_file_counts_a_single_problem_in_the_singular(tmp_path):
    path = write_env(tmp_path, env_text(valid(SMTP_PORT="0")))
    with pytest.raises(EnvFileError) as err:
        check_env_file(path, production=False)
    assert str(err.value).splitlines()[0] == f"{path}: 1 problem (non-production rules):"


def test_check_env_file_passes_warnings_to_warn_when_there_is_no_error(tmp_path):
    path = write_env(tmp_path, env_text(valid(NEXTAUTH_URL="http://your-domain.com")))
    seen: list[str] = []
    assert check_env_file(path, production=False, warn=seen.append)["NEXTAUTH_URL"] == "http://your-domain.com"
    assert seen == [f"{path}: warning: NEXTAUTH_URL: is still the example placeholder 'http://your-domain.com' — "
                    "replace it with the real value before production"]


def test_check_env_file_prints_warnings_to_stderr_by_default(tmp_path, capsys):
    path = write_env(tmp_path, env_text(valid(SMTP_PASWORD="x")))
    check_env_file(path, production=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"{path}: warning: SMTP_PASWORD: is not a known variable; looks like a misspelling of "
                       "SMTP_PASSWORD — rename it to SMTP_PASSWORD (names are case-sensitive), or ignore this if "
                       "the app reads it\n")


def test_check_env_file_refuses_a_world_readable_file_before_reading_it(tmp_path):
    path = write_env(tmp_path, env_text(VALID), 0o644)
    with pytest.raises(ConfigError) as err:
        check_env_file(path, production=True)
    assert "chmod 600" in str(err.value)
    assert not isinstance(err.value, EnvFileError)


# ---------------------------------------------------------------- the example


def test_the_committed_example_is_exactly_what_render_example_produces():
    assert EXAMPLE_PATH.read_text(encoding="utf-8") == render_example(), (
        "examples/env.production.example is stale; regenerate it with the command in its header")


def test_the_example_lists_required_variables_and_comments_out_optional_ones():
    text = render_example()
    for var in SCHEMA:
        line = f"{var.name}={var.example}"
        assert text.count(f"\n{line}\n") == (1 if var.required else 0), var.name
        assert text.count(f"\n# {line}\n") == (0 if var.required else 1), var.name
        assert var.description.split()[0] in text


def test_the_example_parses_and_is_refused_in_production_only_for_its_placeholders(tmp_path):
    path = write_env(tmp_path, render_example())
    values = load_env_file(path)
    assert list(values) == REQUIRED
    assert [(p.name, p.rule.split(" '")[0]) for p in validate(values, production=True)] == [
        (name, "is still the example placeholder") for name in
        ("DATABASE_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "NEXT_PUBLIC_SOCKET_URL", "SMTP_USER", "SMTP_PASSWORD")]


def test_the_example_with_its_optional_lines_uncommented_parses_too(tmp_path):
    text = "\n".join(line[2:] if line.startswith("# ") and "=" in line and line[2:3].isupper()
                     and line[2:].split("=")[0] in VARS else line for line in render_example().splitlines())
    path = write_env(tmp_path, text)
    assert sorted(load_env_file(path)) == sorted(VARS)
