"""A throwaway copy of an inventory with some sections changed, for a test that drives the real CLI.

``--host`` only takes files in inventory/, so the copy goes there under a random name and is
removed after. Same hosts, same app: the copy acts on the sandbox fleet (its lock, its
containers); only what the test changes differs (a notify: section, another bucket...).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import yaml

from ops.inventory import INVENTORY_DIR, Environment


@contextlib.contextmanager
def inventory_copy(env: Environment, prefix: str, **sections: dict) -> Iterator[str]:
    """The copy's environment name; each keyword's keys are merged into that section of the copy."""
    raw = yaml.safe_load(env.path.read_text())
    for key, changes in sections.items():
        raw[key] = {**(raw.get(key) or {}), **changes}
    name = f"{prefix}-{secrets.token_hex(4)}"
    path = INVENTORY_DIR / f"{name}.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)
