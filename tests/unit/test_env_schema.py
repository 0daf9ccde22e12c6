"""The app's env schema is declared by the app or the inventory (``env_schema:``): a built-in
profile or a YAML file, whose own problems are all reported at once, one line each."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ops.appenv import (
    DEFAULT_PROFILE,
    PROFILES,
    SCHEMA,
    SECTIONS,
    EnvFileError,
    EnvSchemaError,
    check_env_file,
    load_schema,
    read_schema_file,
    render_example,
    schema_for,
    secret_values,
    validate,
)
from ops.deploy.pipeline import AppEnv
from ops.errors import ConfigError, InventoryError
from ops.inventory import PROJECT_ROOT, load_environment
from ops.masking import Masker
from ops.sandbox.app_env import app_env_values

DB_PASSWORD = "Db-pass-0123456789abcdef0123456789"
DATABASE_URL = f"postgresql://app:{DB_PASSWORD}@10.0.0.21:5432/app"
API_TOKEN = "tok-0123456789abcdef0123456789abcdef"
EXAMPLE_SCHEMA = PROJECT_ROOT / "examples" / "app" / "env.schema.yml"

APP_SCHEMA = """\
variables:
  DATABASE_URL: {required: true, rule: postgres-url}
  API_TOKEN: {required: true, secret: true, min_length: 32}
  PUBLIC_URL: {required: true, rule: url}
  WORKERS: {rule: integer, min: 1, max: 64}
  LOG_LEVEL: {rule: one-of, choices: [debug, info, warn, error]}
  ADMIN_EMAIL: {rule: email}
  REDIS_URL: {rule: url, schemes: [redis, rediss], secret: true}
  CALLBACK_URL: {rule: url, https: always}
  REGION:
    empty: error
  FEATURE_FLAGS:
"""
APP_VALUES = {"DATABASE_URL": DATABASE_URL, "API_TOKEN": API_TOKEN, "PUBLIC_URL": "https://shop.example.org"}


def write(tmp_path: Path, text: str, name: str = "env.schema.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def app_schema(tmp_path: Path):
    return read_schema_file(write(tmp_path, APP_SCHEMA))


def lines(values: dict[str, str], schema, *, production: bool = True) -> list[str]:
    return [str(p) for p in validate(values, production=production, schema=schema)]


def schema_problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(EnvSchemaError) as err:
        read_schema_file(path)
    prefix = f"{path}: "
    assert all(line.startswith(prefix) and "\n" not in line for line in err.value.problems)
    assert str(err.value) == "\n".join(err.value.problems)
    return [line.removeprefix(prefix) for line in err.value.problems]


def env_file(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / "app.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- the built-in profile


def test_the_default_profile_is_nextjs_prisma_exactly_the_seed_schema():
    assert DEFAULT_PROFILE == "nextjs-prisma"
    assert load_schema() is PROFILES["nextjs-prisma"]
    assert load_schema("nextjs-prisma").vars == SCHEMA
    assert load_schema().sections == SECTIONS


def test_an_inventory_without_env_schema_keeps_the_default_profile():
    for name in ("prod", "staging", "sandbox"):
        env = load_environment(name)
        assert env.env_schema == "nextjs-prisma"
        assert schema_for(env) is PROFILES["nextjs-prisma"]


def test_validating_without_a_schema_is_validating_against_the_default_profile():
    values = {"DATABASE_URL": DATABASE_URL}
    assert validate(values, production=True) == validate(values, production=True, schema=load_schema())


def test_an_unknown_profile_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match="env_schema 'rails' is not a built-in profile — use one of: "
                                          "nextjs-prisma, or a path to a .yml schema file"):
        load_schema("rails")


# ---------------------------------------------------------------- an app's schema file


def test_an_env_file_with_only_the_variables_the_app_declares_passes(tmp_path):
    schema = app_schema(tmp_path)
    path = env_file(tmp_path, APP_VALUES)
    assert check_env_file(path, production=True, schema=schema) == APP_VALUES


def test_the_same_file_is_refused_by_the_default_profile_with_ten_problems(tmp_path):
    path = env_file(tmp_path, APP_VALUES)
    with pytest.raises(EnvFileError) as err:
        check_env_file(path, production=True)
    assert str(err.value).splitlines()[0].endswith(": 10 problems (production rules):")


def test_a_missing_required_variable_points_at_the_schema_file(tmp_path):
    schema = app_schema(tmp_path)
    assert lines({k: v for k, v in APP_VALUES.items() if k != "API_TOKEN"}, schema) == [
        f"API_TOKEN: is required but not set — add API_TOKEN=... (declared in {schema.name})"]
    assert lines({**APP_VALUES, "PUBLIC_URL": "  "}, schema) == [
        f"PUBLIC_URL: is empty — give it a value (declared in {schema.name})"]


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("PUBLIC_URL", "http://shop.example.org",
     "PUBLIC_URL: must use https in production (got 'http://shop.example.org') — write https://shop.example.org; "
     "TLS ends at the proxy"),
    ("PUBLIC_URL", "shop.example.org",
     "PUBLIC_URL: must be an http(s) URL with a host (got 'shop.example.org') — write e.g. https://app.example.org"),
    ("CALLBACK_URL", "http://cb.example.org",
     "CALLBACK_URL: must use https (got 'http://cb.example.org') — write https://cb.example.org; TLS ends at the proxy"),
    ("WORKERS", "0", "WORKERS: must be an integer 1-64 (got '0') — write digits only, without units"),
    ("WORKERS", "65", "WORKERS: must be an integer 1-64 (got '65') — write digits only, without units"),
    ("WORKERS", "4 cores", "WORKERS: must be an integer 1-64 (got '4 cores') — write digits only, without units"),
    ("LOG_LEVEL", "verbose",
     "LOG_LEVEL: must be one of debug, info, warn, error (got 'verbose') — write one of them (case-sensitive)"),
    ("ADMIN_EMAIL", "ops-at-example.org",
     "ADMIN_EMAIL: must be an email address (got 'ops-at-example.org') — write e.g. ops@example.org"),
    ("REGION", "", "REGION: is set but empty — give it a value or remove the line"),
    ("API_TOKEN", "tok-short-but-masked",
     "API_TOKEN: must be at least 32 characters (got 20) — generate one with: openssl rand -hex 16"),
])
def test_a_value_that_breaks_its_declared_rule_is_one_line_with_the_fix(tmp_path, name, value, problem):
    assert lines({**APP_VALUES, name: value}, app_schema(tmp_path)) == [problem]


@pytest.mark.parametrize(("name", "value"), [
    ("WORKERS", "64"), ("LOG_LEVEL", "warn"), ("ADMIN_EMAIL", "ops@example.org"), ("REGION", "eu-west-1"),
    ("REDIS_URL", "rediss://:s3cret-redis-password@cache.internal:6380/0"), ("FEATURE_FLAGS", "a,b"),
    ("CALLBACK_URL", "https://cb.example.org/hook"),
])
def test_a_value_that_keeps_its_declared_rule_passes(tmp_path, name, value):
    assert lines({**APP_VALUES, name: value}, app_schema(tmp_path)) == []


def test_http_urls_pass_outside_production_unless_https_is_always(tmp_path):
    schema = app_schema(tmp_path)
    assert lines({**APP_VALUES, "PUBLIC_URL": "http://127.0.0.1:8101"}, schema, production=False) == []
    assert lines({**APP_VALUES, "CALLBACK_URL": "http://127.0.0.1:8101"}, schema, production=False) != []


def test_an_empty_optional_variable_counts_as_unset(tmp_path):
    assert lines({**APP_VALUES, "WORKERS": "", "LOG_LEVEL": "", "REDIS_URL": ""}, app_schema(tmp_path)) == []


def test_a_secret_is_never_shown_not_even_cut_short(tmp_path):
    schema = app_schema(tmp_path)
    long_secret = "http://" + "s3cret-" * 20 + ".example.org"
    problems = lines({**APP_VALUES, "REDIS_URL": long_secret}, schema)
    assert problems == ["REDIS_URL: must be a redis:// or rediss:// URL with a host — write e.g. redis://host.example.org"]
    assert "s3cret" not in "".join(problems)


def test_no_part_of_a_postgres_url_is_ever_shown_and_its_password_is_masked(tmp_path):
    schema = read_schema_file(write(tmp_path, "variables:\n  PRIMARY_DB: {required: true, rule: postgres-url}\n"))
    bad = f"mysql://app:{DB_PASSWORD}@db/app"
    problems = lines({"PRIMARY_DB": bad}, schema)
    assert problems == [
        "PRIMARY_DB: must be a postgres:// or postgresql:// URL (got scheme 'mysql') — write "
        "postgresql://USER:PASSWORD@HOST:5432/DBNAME and percent-encode special characters in the password "
        "(@ : / ? # % as %40 %3A %2F %3F %23 %25)"]
    assert DB_PASSWORD in secret_values({"PRIMARY_DB": DATABASE_URL}, schema)


def test_the_secrets_a_schema_declares_are_the_ones_masked(tmp_path):
    schema = app_schema(tmp_path)
    found = secret_values({**APP_VALUES, "REDIS_URL": "rediss://:redis-password-0123@cache:6380"}, schema)
    assert API_TOKEN in found and DB_PASSWORD in found
    assert "rediss://:redis-password-0123@cache:6380" in found
    assert "https://shop.example.org" not in found


def test_a_typo_of_a_declared_variable_is_a_warning_and_other_names_pass_silently(tmp_path):
    problems = validate({**APP_VALUES, "LOG_LEVLE": "info", "NODE_OPTIONS": "--max-old-space-size=512"},
                        production=True, schema=app_schema(tmp_path))
    assert [str(p) for p in problems] == [
        "warning: LOG_LEVLE: is not a known variable; looks like a misspelling of LOG_LEVEL — rename it to "
        "LOG_LEVEL (names are case-sensitive), or ignore this if the app reads it"]


def test_a_placeholder_left_in_is_an_error_in_production_and_a_warning_elsewhere(tmp_path):
    schema = app_schema(tmp_path)
    values = {**APP_VALUES, "API_TOKEN": "<api-token-generate-32-chars-long>"}
    assert lines(values, schema) == ["API_TOKEN: is still the example placeholder — replace it with the real value"]
    assert [p.severity for p in validate(values, production=False, schema=schema)] == ["warning"]


def test_variables_the_tool_reads_keep_their_rules_when_the_schema_does_not_declare_them(tmp_path):
    schema = app_schema(tmp_path)
    assert lines({**APP_VALUES, "MAX_FILE_SIZE": "10MB"}, schema) == [
        "MAX_FILE_SIZE: must be a positive integer number of bytes (got '10MB') — write bytes without units, "
        "e.g. 10485760 for 10 MB"]
    assert lines({**APP_VALUES, "FILE_UPLOAD_DIR": "", "MAX_FILE_SIZE": ""}, schema) == []
    assert "postgres-password-0123" in secret_values({**APP_VALUES, "POSTGRES_PASSWORD": "postgres-password-0123"},
                                                     schema)


def test_a_schema_file_renders_an_example_with_optional_variables_commented_out(tmp_path):
    text = render_example(app_schema(tmp_path))
    assert "\nDATABASE_URL=postgresql://app:<db-password>@<db-host>:5432/app\n" in text
    assert "\nAPI_TOKEN=<api-token>\n" in text
    assert "\n# LOG_LEVEL=...\n" in text
    assert "MAX_FILE_SIZE" not in text          # read by the tool, not declared by the app


# ---------------------------------------------------------------- the schema file's own problems


def test_every_problem_of_a_schema_file_is_reported_at_once_with_key_path_and_fix(tmp_path):
    assert schema_problems(tmp_path, """\
version: 2
variables:
  DATABASE_URL: {required: yes-please, rule: postgres}
  API_TOKEN: {secret: true, min_lenght: 32}
  LOG_LEVEL: {rule: one-of}
  WORKERS: {rule: integer, min: 10, max: 2, choices: [a]}
  PUBLIC_URL: {rule: url, https: sometimes, schemes: HTTP}
  REGION: {required: true, empty: error}
  TIMEOUT: {empty: never}
  2FA_SECRET: {secret: true}
  ODD: [required]
""") == [
        "version: unknown key — remove it; the only top-level key is 'variables'",
        "variables.DATABASE_URL.required: must be true or false, got 'yes-please' — write true or false",
        "variables.DATABASE_URL.rule: unknown rule 'postgres' — use one of: string, url, postgres-url, integer, "
        "port, email, hostname, absolute-path, one-of, sentry-dsn, datadog-api-key",
        "variables.API_TOKEN.min_lenght: unknown setting — remove it or use one of: required, secret, rule, choices, "
        "min, max, schemes, https, min_length, empty, description, example",
        "variables.LOG_LEVEL.choices: rule one-of needs a non-empty list of values, got None — write e.g. "
        "'choices: [debug, info, warn, error]'",
        "variables.WORKERS.choices: only applies to rule one-of — remove it, or set rule: one-of",
        "variables.WORKERS.min: 10 is above max 2 — swap them",
        "variables.PUBLIC_URL.schemes: must be a list of lowercase URL schemes, got 'HTTP' — write e.g. "
        "'schemes: [redis, rediss]' (default: [http, https])",
        "variables.PUBLIC_URL.https: must be production, always or never, got 'sometimes' — write 'production' "
        "(https required when production: true), 'always' or 'never'",
        "variables.REGION.empty: only applies to optional variables — remove it: an empty required variable is "
        "always an error",
        "variables.TIMEOUT.empty: must be unset or error, got 'never' — write 'unset' (an empty value counts as not "
        "set) or 'error'",
        "variables.2FA_SECRET: '2FA_SECRET' is not a variable name — use letters, digits and '_', not starting "
        "with a digit (e.g. DATABASE_URL)",
        "variables.ODD: must be a mapping of settings, got ['required'] — write e.g. '{required: true, rule: url}', "
        "or nothing for an optional string",
    ]


def test_a_variable_declared_twice_is_reported_with_the_line_of_the_second(tmp_path):
    assert schema_problems(tmp_path, "variables:\n  API_TOKEN: {secret: true}\n  API_TOKEN: {}\n") == [
        "variables.API_TOKEN: written twice (again on line 3) — keep one: YAML would silently keep only the last"]


@pytest.mark.parametrize(("text", "problem"), [
    ("", "(top level): must be a mapping with 'variables:', got nothing (the file is empty) — start the file with "
         "'variables:' followed by the app's variable names, indented"),
    ("- DATABASE_URL\n", "(top level): must be a mapping with 'variables:', got list — start the file with "
                         "'variables:' followed by the app's variable names, indented"),
    ("vars: {}\n", "variables: missing — declare the app's variables under 'variables:'"),
    ("variables:\n", "variables: must be a non-empty mapping of NAME -> settings, got None — write e.g. "
                     "'variables: {DATABASE_URL: {required: true, rule: postgres-url}}'"),
])
def test_a_schema_file_without_variables_is_refused(tmp_path, text, problem):
    assert problem in schema_problems(tmp_path, text)


def test_a_schema_file_that_is_not_yaml_is_one_line_with_its_line_number(tmp_path):
    assert schema_problems(tmp_path, "variables:\n  A: {required: true\n  B: {}\n") == [
        "line 3: not valid YAML (expected ',' or '}', but got ':') — fix the syntax"]


# ---------------------------------------------------------------- where the schema comes from


def inventory(tmp_path: Path, **changes) -> Path:
    data = {"app": "shop", "image": "registry.example.com/team/shop", "registry": {"url": "registry.example.com"},
            "ssh": {"user": "ops", "known_hosts": "inventory/shop.known_hosts"},
            "hosts": {"web1": {"address": "10.0.0.11", "roles": ["web"]}}, **changes}
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    (inv / "shop.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def test_a_schema_path_is_read_from_the_repository_root_like_every_inventory_path(tmp_path):
    write(tmp_path, APP_SCHEMA, "config/shop.schema.yml")
    env = load_environment("shop", inventory(tmp_path, env_schema="config/shop.schema.yml"))
    assert env.env_schema == "config/shop.schema.yml"
    assert [var.name for var in schema_for(env).vars][:2] == ["DATABASE_URL", "API_TOKEN"]


def test_a_schema_path_is_also_looked_up_in_the_apps_checkout(tmp_path):
    write(tmp_path, APP_SCHEMA, "checkout/env.schema.yml")
    env = load_environment("shop", inventory(tmp_path, env_schema="env.schema.yml", build={"source": "checkout"}))
    assert schema_for(env).name.endswith("checkout/env.schema.yml")


def test_a_missing_schema_file_names_every_place_it_was_looked_for(tmp_path):
    env = load_environment("shop", inventory(tmp_path, env_schema="env.schema.yml", build={"source": "checkout"}))
    with pytest.raises(ConfigError) as err:
        schema_for(env)
    assert str(err.value).startswith(f"env_schema env.schema.yml: no such file (looked for {tmp_path}/env.schema.yml "
                                     f"and {tmp_path}/checkout/env.schema.yml)")


@pytest.mark.parametrize(("value", "problem"), [
    ("rails", "env_schema: 'rails' is neither a built-in profile nor a .yml file — use one of: nextjs-prisma, "
              "or a path to the app's schema file ending in .yml"),
    (["nextjs-prisma"], "env_schema: must be a non-empty string, got ['nextjs-prisma'] — set it to a built-in "
                        "profile or a path to a .yml schema file"),
])
def test_the_inventory_refuses_an_env_schema_that_is_neither_a_profile_nor_a_yml_file(tmp_path, value, problem):
    with pytest.raises(InventoryError) as err:
        load_environment("shop", inventory(tmp_path, env_schema=value))
    assert [line.split(": ", 1)[1] for line in err.value.problems] == [problem]


def test_the_deploy_checks_the_env_file_against_the_inventorys_schema_and_masks_its_secrets(tmp_path):
    write(tmp_path, APP_SCHEMA, "env.schema.yml")
    env = load_environment("shop", inventory(tmp_path, env_schema="env.schema.yml"))
    env = dataclasses.replace(env, env_file=env_file(tmp_path, APP_VALUES))
    masker = Masker()
    app_env = AppEnv.load(env, masker)
    assert app_env.values == APP_VALUES
    assert masker(f"token {API_TOKEN}") == "token ********"


def test_a_broken_schema_file_stops_the_deploy_before_the_env_file_is_judged(tmp_path):
    write(tmp_path, "variables:\n  API_TOKEN: {rule: token}\n", "env.schema.yml")
    env = load_environment("shop", inventory(tmp_path, env_schema="env.schema.yml"))
    env = dataclasses.replace(env, env_file=env_file(tmp_path, APP_VALUES))
    with pytest.raises(EnvSchemaError, match=re.escape("variables.API_TOKEN.rule: unknown rule 'token'")):
        AppEnv.load(env, Masker())


# ---------------------------------------------------------------- the shipped examples


def test_the_sample_apps_schema_loads_and_the_sandboxs_env_file_passes_it():
    schema = read_schema_file(EXAMPLE_SCHEMA)
    values = app_env_values(load_environment("sandbox"), token=lambda n: "x" * (n * 4 // 3))
    assert validate(values, production=False, schema=schema) == []
    assert validate({"DATABASE_URL": values["DATABASE_URL"]}, production=True, schema=schema) == []


def test_the_readme_documents_a_schema_that_loads(tmp_path):
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## The app's env schema", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n    variables:\n(?:      .*\n)+", section).group(0)
    schema = read_schema_file(write(tmp_path, "\n".join(line[4:] for line in block.strip("\n").splitlines())))
    assert [var.name for var in schema.vars] == ["DATABASE_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "REDIS_URL",
                                                 "WORKERS", "LOG_LEVEL", "ADMIN_EMAIL"]
