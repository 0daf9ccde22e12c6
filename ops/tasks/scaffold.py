"""``inv scaffold`` (alias ``inv init``): production files for a Next.js app checkout."""

from __future__ import annotations

from pathlib import Path

from ops.cli import number
from ops.errors import ConfigError
from ops.inventory import Health
from ops.scaffold import facts as app_facts
from ops.scaffold import files as scaffold_files
from ops.scaffold import write
from ops.tasks import ops_task, print_json, say, warn


# NOTE: it writes files on this machine only (no host, no lock to take): the Operation
# envelope is for the fleet. --dry-run shows the plan; nothing is overwritten without --force.
@ops_task(mutating=True, aliases=("init",), help={
    "path": "the app's checkout (the directory with package.json)",
    "env": "environment name for the inventory skeleton and the workflows (default: production)",
    "schema": "env schema for env.example and config/environment.ts: a built-in profile or a .yml file "
              "(default: the checkout's env.schema.yml, else nextjs-prisma)",
    "app": "app name (default: from package.json)",
    "health_path": f"the app's health route (default: {Health.path})",
    "port": f"the port the app listens on in its container (default: {Health.port})",
    "only": "comma-separated files to write (e.g. config/environment.ts)",
    "force": "overwrite files that exist with other content",
    "dry_run": "print what would be written; write nothing",
    "json": "print the plan or the result as JSON",
})
def scaffold(c, path="", env="production", schema="", app="", health_path=Health.path, port=Health.port, only="",
             force=False, dry_run=False, json=False):
    """Write Dockerfile, compose files, env.example, config/environment.ts, inventory and CI into an app."""
    if not path:
        raise ConfigError("no --path given", hint="pass the app's checkout, e.g. inv scaffold --path ../athlete-platform")
    if not health_path.startswith("/"):
        raise ConfigError(f"--health-path {health_path!r} must start with '/'", hint="e.g. --health-path /api/health")
    port = int(number(port, "--port", minimum=1, integer=True))
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"--path {path}: no such directory", hint="pass the app's checkout")
    facts = app_facts.read(root, schema=schema, app=app)
    files = scaffold_files.render(facts, env_name=env, health_path=health_path, port=port)
    actions = write.plan(root, files, force=force, only=tuple(n.strip() for n in only.split(",") if n.strip()))
    mode = "standalone output" if facts.standalone else f"its own server ({' '.join(facts.start)})"
    say(f"scaffold for {facts.app} in {root}: Next.js with {mode}; env schema {facts.schema_spec}; "
        f"migrate: {facts.migrate or 'off'}")
    for a in actions:
        say(f"  {a.path}: {a.action}")
    for note in facts.notes:
        warn(note)
    print_json({"app": facts.app, "root": str(root), "files": {a.path: a.action for a in actions},
                "dry_run": dry_run})
    if dry_run:
        say("dry-run: nothing was written")
        return
    write.apply(root, files, actions)
    written = [a.path for a in actions if a.action in (write.CREATE, write.OVERWRITE)]
    say(f"wrote {len(written)} file(s)" + (f"; kept {sum(a.action == write.KEPT for a in actions)} existing "
                                           "(--force to overwrite)" if any(a.action == write.KEPT for a in actions)
                                           else ""))
