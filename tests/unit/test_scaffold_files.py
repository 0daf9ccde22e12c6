"""``inv scaffold`` on copies of the Next.js sample app: what it detects, what it writes (never
over an existing file without --force), and real linters over every file it writes:
hadolint (Dockerfile), yamllint (YAML), check-jsonschema with GitHub's workflow schema,
shellcheck over each workflow ``run:`` step, ``docker-compose config`` (both compose files)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops.inventory import load_environment
from ops.scaffold import facts as app_facts
from ops.scaffold.files import render

ROOT = Path(__file__).resolve().parents[2]
NEXTJS = ROOT / "examples" / "nextjs"
BIN = Path(sys.executable).parent
INV = str(BIN / "inv")
YAMLLINT = "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}"


def app_copy(dest: Path, *, standalone: bool = False) -> Path:
    shutil.copytree(NEXTJS, dest, ignore=shutil.ignore_patterns("node_modules", ".next", "Dockerfile", ".dockerignore",
                                                               "env.example"))
    if standalone:
        (dest / "next.config.mjs").write_text("export default { output: 'standalone' };\n")
        pkg = json.loads((dest / "package.json").read_text())
        pkg["scripts"] = {"build": "next build", "start": "next start"}
        pkg["dependencies"]["prisma"] = "6.0.0"
        (dest / "package.json").write_text(json.dumps(pkg))
    return dest


def scaffold(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INV, "scaffold", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def run(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    apps = {}
    for name, standalone in (("server", False), ("standalone", True)):
        app = app_copy(tmp_path_factory.mktemp(name) / "app", standalone=standalone)
        proc = scaffold("--path", str(app), "--env", "prod")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        apps[name] = app
    return apps


def test_the_sample_app_is_seen_as_a_custom_server_with_its_own_migrator(tmp_path):
    facts = app_facts.read(app_copy(tmp_path / "app"))
    assert (facts.app, facts.standalone, facts.start) == ("athlete-platform-nextjs", False, ("node", "server.js"))
    assert (facts.migrate, facts.needs_npm, facts.schema_spec) == ("node scripts/migrate.js", False, "nextjs-prisma")


def test_standalone_output_and_prisma_give_the_standalone_image_and_npx_prisma(written):
    facts = app_facts.read(written["standalone"])
    assert facts.standalone and facts.start == ("node", "server.js") and facts.migrate == "npx prisma migrate deploy"
    dockerfile = (written["standalone"] / "Dockerfile").read_text()
    assert "COPY --from=build /src/.next/standalone /app" in dockerfile
    assert "nodejs ca-certificates npm" in dockerfile     # npx for the migrate command


def test_every_file_is_written_and_the_inventory_skeleton_passes_the_tools_validation(written):
    app = written["server"]
    for rel in ("Dockerfile", ".dockerignore", "docker-compose.yml", "docker-compose.prod.yml", "env.example",
                "config/environment.ts", "inventory/prod.yml", ".github/workflows/test.yml",
                ".github/workflows/deploy.yml", ".github/workflows/backups.yml"):
        assert (app / rel).is_file(), rel
    env = load_environment("prod", app / "inventory")
    assert env.app == "athlete-platform-nextjs" and env.migrate.command == "node scripts/migrate.js"
    assert env.health.path == "/api/health" and env.migrate.policy == "ask"
    dockerfile = (app / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "HEALTHCHECK" in dockerfile and "path:'/api/health'" in dockerfile
    assert 'CMD ["node", "server.js"]' in dockerfile and "ARG OPS_CA_BUNDLE=" in dockerfile
    assert "!.ops-ca-bundle.pem" in (app / ".dockerignore").read_text()
    assert "NEXTAUTH_SECRET (required, secret)" in (app / "env.example").read_text()


def test_hadolint_passes_on_both_dockerfiles(written):
    for app in written.values():
        proc = run(str(BIN / "hadolint"), "Dockerfile", cwd=app)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_passes_on_every_yaml_file(written):
    for app in written.values():
        files = ["docker-compose.yml", "docker-compose.prod.yml", "inventory/prod.yml",
                 *(str(p.relative_to(app)) for p in (app / ".github" / "workflows").glob("*.yml"))]
        proc = run(str(BIN / "yamllint"), "--strict", "-d", YAMLLINT, *files, cwd=app)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_match_githubs_schema_and_their_shell_steps_pass_shellcheck(written, tmp_path):
    app = written["server"]
    workflows = sorted((app / ".github" / "workflows").glob("*.yml"))
    proc = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, workflows),
               cwd=app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scripts = 0
    for wf in workflows:
        for job in yaml.safe_load(wf.read_text())["jobs"].values():
            for i, step in enumerate(job["steps"]):
                if "run" not in step:
                    continue
                # GitHub expands ${{ }} before the shell sees the script.
                script = tmp_path / f"{wf.stem}-{i}.sh"
                script.write_text("#!/bin/bash\nset -e\n" + re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"]))
                proc = run(str(BIN / "shellcheck"), str(script), cwd=tmp_path)
                assert proc.returncode == 0, f"{wf.name} step {i}:\n{proc.stdout}"
                scripts += 1
    assert scripts >= 8
    deploy = yaml.safe_load((app / ".github/workflows/deploy.yml").read_text())
    assert deploy["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    assert deploy["jobs"]["deploy"]["environment"] == "prod"
    assert any("inv deploy --host prod --lock-wait 600" in s.get("run", "") for s in deploy["jobs"]["deploy"]["steps"])
    backups = (app / ".github/workflows/backups.yml").read_text()
    assert "backup.check --host prod" in backups and "backup.verify --host prod" in backups


def test_docker_compose_accepts_both_compose_files(written):
    app = written["server"]
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed: run scripts/bootstrap"
    (app / ".env").write_text("")
    (app / ".env.production").write_text("")
    for args, extra in ((["-f", "docker-compose.yml"], {}), (["-f", "docker-compose.prod.yml"], {"APP_IMAGE": "x"})):
        proc = run(compose, *args, "config", "-q", cwd=app, env={"PATH": "/usr/bin:/bin", **extra})
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_existing_files_are_kept_without_force_and_a_dry_run_writes_nothing(tmp_path):
    app = app_copy(tmp_path / "app")
    (app / "Dockerfile").write_text("FROM mine\n")
    dry = scaffold("--path", str(app), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)["data"]
    assert data["files"]["Dockerfile"].startswith("kept") and data["files"]["docker-compose.yml"] == "create"
    assert not (app / "docker-compose.yml").exists()
    real = scaffold("--path", str(app))
    assert real.returncode == 0 and (app / "Dockerfile").read_text() == "FROM mine\n"
    assert "kept 1 existing (--force to overwrite)" in real.stdout
    again = scaffold("--path", str(app), "--json")
    assert set(json.loads(again.stdout)["data"]["files"].values()) == {"unchanged", "kept (exists; --force to overwrite)"}
    forced = scaffold("--path", str(app), "--force", "--only", "Dockerfile")
    assert forced.returncode == 0 and "HEALTHCHECK" in (app / "Dockerfile").read_text()


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    missing = scaffold("--path", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    not_app = scaffold("--path", str(tmp_path / "empty"))
    assert not_app.returncode == 2 and "has no package.json" in not_app.stderr
    only = scaffold("--path", str(app_copy(tmp_path / "app")), "--only", "Makefile")
    assert only.returncode == 2 and "not a file the scaffold writes" in only.stderr


def test_the_files_are_rendered_from_the_schema_the_deploy_uses(tmp_path):
    app = app_copy(tmp_path / "app")
    (app / "env.schema.yml").write_text("variables:\n  DATABASE_URL: {required: true, rule: postgres-url}\n"
                                        "  LOG_LEVEL: {rule: one-of, choices: [debug, info]}\n")
    files = render(app_facts.read(app), env_name="staging")
    assert "env_schema: env.schema.yml" in files["inventory/staging.yml"]
    assert "LOG_LEVEL?: string;" in files["config/environment.ts"]
    assert '"choices": [\n        "debug",' in files["config/environment.ts"]
    assert "# LOG_LEVEL=" in files["env.example"] and "NEXTAUTH_SECRET" not in files["env.example"]
