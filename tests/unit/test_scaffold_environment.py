"""config/environment.ts, generated from the env schema, compiles under ``tsc --strict`` and
refuses exactly the values the deploy's own validation (``ops.appenv.validate``) refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ops.appenv import PROFILES, read_schema_file, validate
from ops.scaffold.environment_ts import render_environment_ts
from tests.support.node_tools import compile_ts

ROOT = Path(__file__).resolve().parents[2]

VALID = {
    "DATABASE_URL": "postgresql://app:s3cret-pass@db:5432/app?schema=public",
    "NEXTAUTH_URL": "https://app.example.org",
    "NEXTAUTH_SECRET": "k" * 40,
    "NEXT_PUBLIC_SOCKET_URL": "https://app.example.org",
    "NEXT_PUBLIC_SOCKET_NAMESPACE": "/socket.io",
    "FILE_UPLOAD_DIR": "/var/app/uploads",
    "MAX_FILE_SIZE": "10485760",
    "SMTP_HOST": "smtp.example.org",
    "SMTP_PORT": "587",
    "SMTP_USER": "mailer@example.org",
    "SMTP_PASSWORD": "mail-password-1",
    "SENTRY_ENVIRONMENT": "production",
}
# (variable, value): each breaks one rule, or (marked ok) passes it.
CASES = [
    ("DATABASE_URL", "mysql://app:pw12@db/app"), ("DATABASE_URL", "postgresql://app@db/app"),
    ("DATABASE_URL", "postgresql://app:pw12@db/"), ("DATABASE_URL", "postgresql://app:p@db/app"),
    ("NEXTAUTH_URL", "http://app.example.org"), ("NEXTAUTH_URL", "app.example.org"), ("NEXTAUTH_URL", "ok:https://x.org"),
    ("NEXTAUTH_SECRET", "short"), ("NEXTAUTH_SECRET", "<generate-32-char-random>"),
    ("NEXT_PUBLIC_SOCKET_NAMESPACE", "socket.io"), ("FILE_UPLOAD_DIR", "uploads"), ("FILE_UPLOAD_DIR", "/"),
    ("MAX_FILE_SIZE", "10MB"), ("MAX_FILE_SIZE", "0"), ("SMTP_HOST", "smtp://mail"), ("SMTP_HOST", "ok:10.0.0.5"),
    ("SMTP_PORT", "70000"), ("SMTP_USER", ""), ("SMTP_PASSWORD", " "),
    ("SENTRY_DSN", "http://k@sentry.io/1"), ("SENTRY_DSN", "https://sentry.io/1"), ("SENTRY_DSN", "ok:https://k@o1.ingest.sentry.io/42"),
    ("SENTRY_DSN", "ok:"), ("SENTRY_ENVIRONMENT", "my env"), ("SENTRY_ENVIRONMENT", ""),
    ("DATADOG_API_KEY", "XYZ"), ("DATADOG_API_KEY", "ok:" + "a1" * 16), ("PRISMA_QUERY_ENGINE_TYPE", "wasm"),
    ("POSTGRES_USER", ""), ("POSTGRES_PASSWORD", "abc"), ("POSTGRES_DB", "ok:app"),
]


def run_ts(module_dir: Path, envs: list[dict], production: bool) -> list[list[str]]:
    script = ("const m = require(process.argv[1]); const envs = JSON.parse(process.argv[2]);"
              "console.log(JSON.stringify(envs.map((e) => m.validate(e, process.argv[3] === 'true')"
              ".map((p) => p.split(':')[0]))));")
    out = subprocess.run(["node", "-e", script, str(module_dir / "environment.js"), json.dumps(envs),
                          str(production).lower()], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def builtin_module(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("envts")
    source = tmp / "environment.ts"
    source.write_text(render_environment_ts(PROFILES["nextjs-prisma"]))
    proc = compile_ts(source, tmp / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp / "out"


@pytest.mark.parametrize("production", [True, False])
def test_the_generated_validator_refuses_what_the_deploy_refuses(builtin_module, production):
    envs, expected = [dict(VALID)], [[]]
    for name, value in CASES:
        ok = value.startswith("ok:")
        env = {**VALID, name: value.removeprefix("ok:")}
        envs.append(env)
        python = sorted({p.name for p in validate(env, production=production) if p.is_error})
        expected.append(python)
        if ok:
            assert python == [], (name, value, python)
    assert expected[0] == [] and any(expected[1:])
    got = [sorted(set(names)) for names in run_ts(builtin_module, envs, production)]
    mismatches = [(case, e, g) for case, e, g in zip([("VALID", "")] + CASES, expected, got, strict=True) if e != g]
    assert not mismatches


def test_a_missing_required_variable_is_named_and_no_secret_value_is_shown(builtin_module):
    env = {k: v for k, v in VALID.items() if k != "SMTP_HOST"}
    env["NEXTAUTH_SECRET"] = "tiny-secret-value"
    script = ("const m = require(process.argv[1]); try { m.environment(JSON.parse(process.argv[2]), true); }"
              " catch (e) { console.log(e.name + '\\n' + e.message); }")
    out = subprocess.run(["node", "-e", script, str(builtin_module / "environment.js"), json.dumps(env)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("EnvironmentError\nenvironment: 2 problem(s):")
    assert "SMTP_HOST: is required but not set" in out and "NEXTAUTH_SECRET: must be at least 32 characters" in out
    assert "tiny-secret-value" not in out


def test_an_app_schema_file_generates_its_own_typed_environment(tmp_path):
    schema = read_schema_file(ROOT / "examples" / "app" / "env.schema.yml")
    text = render_environment_ts(schema)
    assert "  DATABASE_URL: string;" in text and "  SENTRY_DSN?: string;" in text
    source = tmp_path / "environment.ts"
    source.write_text(text)
    proc = compile_ts(source, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
