"""What an app checkout says about itself, for the scaffold: name, how it starts, whether
Next.js builds standalone output, how it migrates, which env schema it declares."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ops.appenv import PROFILES, EnvSchema, load_schema
from ops.errors import ConfigError

SCHEMA_FILE = "env.schema.yml"
_STANDALONE = re.compile(r"""output\s*:\s*['"]standalone['"]""")


@dataclass(frozen=True)
class AppFacts:
    root: Path
    app: str                          # lowercase name (containers, inventory)
    standalone: bool                  # next.config sets output: 'standalone'
    start: tuple[str, ...]            # the runtime's CMD
    migrate: str | None               # migrate.command; None: the app has no migrations
    needs_npm: bool                   # the migrate command runs npx/npm: the runtime image needs npm
    schema_spec: str                  # env_schema for the inventory
    schema: EnvSchema
    notes: list[str] = field(default_factory=list)


def _without_comments(js: str) -> str:
    """JavaScript without /* */ and // comments (a comment may mention output: 'standalone')."""
    return re.sub(r"(?m)(^|\s)//.*$", r"\1", re.sub(r"/\*.*?\*/", " ", js, flags=re.S))


def app_name(raw: str) -> str:
    """A package name as the tool's app name: ``@acme/Athlete_Platform`` -> ``athlete-platform``."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.rsplit("/", 1)[-1].lower()).strip("-")[:63]
    return name or "app"


def read(root: Path, *, schema: str = "", app: str = "") -> AppFacts:
    root = Path(root)
    package = root / "package.json"
    if not package.is_file():
        raise ConfigError(f"{root} has no package.json: not a Node.js app checkout",
                          hint="pass --path to the app's checkout (the directory with package.json)")
    try:
        pkg = json.loads(package.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{package} is not valid JSON ({exc})", hint="fix package.json") from None
    scripts = pkg.get("scripts") or {}
    deps = {**(pkg.get("devDependencies") or {}), **(pkg.get("dependencies") or {})}
    notes: list[str] = []
    if "next" not in deps:
        notes.append("package.json does not depend on next: the Dockerfile runs `next build`")

    configs = [p for p in root.glob("next.config.*") if p.is_file()]
    standalone = any(_STANDALONE.search(_without_comments(p.read_text(errors="replace"))) for p in configs)
    start_script = str(scripts.get("start", ""))
    words = shlex.split(start_script) if start_script else []
    if standalone:
        start: tuple[str, ...] = ("node", "server.js")
    elif len(words) == 2 and words[0] == "node":
        start = ("node", words[1])
    else:
        start = ("node_modules/.bin/next", "start")
        notes.append("no output: 'standalone' in next.config and no `node <server>` start script: the image runs "
                     "`next start` with the production node_modules")

    migrate_script = str(scripts.get("migrate:deploy", ""))
    if migrate_script.startswith("node "):
        migrate, needs_npm = migrate_script, False
    elif "prisma" in deps or (root / "prisma" / "schema.prisma").is_file():
        migrate, needs_npm = "npx prisma migrate deploy", True
        if "prisma" in (pkg.get("devDependencies") or {}):
            notes.append("prisma is a devDependency: move it to dependencies, or the runtime image (npm prune "
                         "--omit=dev) has no Prisma CLI to migrate with")
    else:
        migrate, needs_npm = None, False

    if schema:
        spec = schema
    elif (root / SCHEMA_FILE).is_file():
        spec = SCHEMA_FILE
    else:
        spec = "nextjs-prisma"
    loaded = load_schema(spec, root=root) if spec not in PROFILES else PROFILES[spec]
    return AppFacts(root=root, app=app or app_name(str(pkg.get("name") or root.name)), standalone=standalone,
                    start=start, migrate=migrate, needs_npm=needs_npm, schema_spec=spec, schema=loaded, notes=notes)
