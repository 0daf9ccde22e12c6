"""The scaffold's plan (per file: create, unchanged, kept, overwrite) and writing it.

A file that exists with other content is kept unless ``force``: the operator's edits
win. Files are written whole (temp file + rename), so an interrupted run leaves each
file old or new.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ops.errors import ConfigError

CREATE, UNCHANGED, KEPT, OVERWRITE = "create", "unchanged", "kept (exists; --force to overwrite)", "overwrite"


@dataclass(frozen=True)
class FileAction:
    path: str
    action: str


def plan(root: Path, files: dict[str, str], *, force: bool, only: tuple[str, ...] = ()) -> list[FileAction]:
    unknown = [name for name in only if name not in files]
    if unknown:
        raise ConfigError(f"--only {','.join(unknown)}: not a file the scaffold writes",
                          hint=f"one of: {', '.join(files)}")
    actions = []
    for rel, content in files.items():
        if only and rel not in only:
            continue
        target = root / rel
        if not target.exists():
            actions.append(FileAction(rel, CREATE))
        elif target.is_file() and target.read_text(errors="replace") == content:
            actions.append(FileAction(rel, UNCHANGED))
        elif not target.is_file():
            raise ConfigError(f"{target} exists and is not a file", hint="move it away, then run the scaffold again")
        else:
            actions.append(FileAction(rel, OVERWRITE if force else KEPT))
    return actions


def apply(root: Path, files: dict[str, str], actions: list[FileAction]) -> None:
    for a in actions:
        if a.action not in (CREATE, OVERWRITE):
            continue
        target = root / a.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.ops-scaffold-tmp")
        tmp.write_text(files[a.path])
        os.replace(tmp, target)
