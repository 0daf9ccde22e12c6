"""Every file ``inv scaffold`` writes, as text, from the app's facts and the tool's settings.

Templates (``templates/``) take ``@@NAME@@`` placeholders (GitHub's ``${{ }}`` and
Compose's ``${}`` stay literal). ``env.example`` and ``config/environment.ts`` come from
the env schema the deploy validates; the inventory skeleton is validated by the
tool's own inventory reader before anything is written.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from ops.appenv import render_example
from ops.errors import OpsError
from ops.inventory import NAME_RE, Health, load_environment
from ops.scaffold.environment_ts import render_environment_ts
from ops.scaffold.facts import AppFacts

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


def fill(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder @@{m.group(1)}@@ has no value")
        return values[m.group(1)]
    return _PLACEHOLDER.sub(sub, template)


def _template(name: str, values: dict[str, str]) -> str:
    return fill((TEMPLATES / name).read_text(), values)


def _upload_dir(facts: AppFacts) -> str:
    var = facts.schema.by_name.get("FILE_UPLOAD_DIR")
    example = var.example if var is not None else ""
    return example if example.startswith("/") else "/var/app/uploads"


def render(facts: AppFacts, *, env_name: str, health_path: str = Health.path, port: int = Health.port) -> dict[str, str]:
    """Relative path -> content of every scaffolded file."""
    if not NAME_RE.match(env_name):
        raise OpsError(f"--env {env_name!r} is not an environment name", hint="use lowercase letters, digits, '-'")
    image = f"registry.example.com/{facts.app}/web"
    values = {
        "APP": facts.app, "ENV": env_name, "IMAGE": image, "REGISTRY": "registry.example.com",
        "PORT": str(port), "HEALTH_PATH": health_path, "UPLOAD_DIR": _upload_dir(facts),
        "CMD": json.dumps(list(facts.start)), "START": " ".join(facts.start),
        "RUNTIME_PACKAGES": " npm" if facts.needs_npm else "",
        "MIGRATE": facts.migrate or "true", "ENV_SCHEMA": facts.schema_spec, "BUCKET": f"{facts.app}-backups",
    }
    inventory = _template("inventory.yml", values)
    if facts.migrate is None:
        inventory = re.sub(r"(?ms)^migrate:\n(?:  .*\n)+", "migrate: false         # the app has no migrations\n",
                           inventory)
    check_inventory(inventory, env_name)
    files = {
        "Dockerfile": _template("Dockerfile.standalone" if facts.standalone else "Dockerfile.server", values),
        ".dockerignore": _template("dockerignore", values),
        "docker-compose.yml": _template("docker-compose.yml", values),
        "docker-compose.prod.yml": _template("docker-compose.prod.yml", values),
        "env.example": render_example(facts.schema),
        "config/environment.ts": render_environment_ts(facts.schema),
        f"inventory/{env_name}.yml": inventory,
        ".github/workflows/test.yml": _template("workflows/test.yml", values),
        ".github/workflows/deploy.yml": _template("workflows/deploy.yml", values),
        ".github/workflows/backups.yml": _template("workflows/backups.yml", values),
    }
    return files


def check_inventory(text: str, env_name: str) -> None:
    """The skeleton must pass the tool's own validation as written (raises ``InventoryError``)."""
    with tempfile.TemporaryDirectory(prefix="ops-scaffold-") as tmp:
        inv = Path(tmp) / "inventory"
        inv.mkdir()
        (inv / f"{env_name}.yml").write_text(text)
        load_environment(env_name, inv)
