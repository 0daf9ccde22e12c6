"""Node tools the scaffold tests lint generated files with (TypeScript's ``tsc``), installed
once from the npm registry into a cache outside the repository (``npm`` must be on PATH:
``scripts/bootstrap`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CACHE = Path.home() / ".cache" / "ops-tests" / "node-tools"
TYPESCRIPT = "typescript@5"


def tsc() -> Path:
    exe = CACHE / "node_modules" / ".bin" / "tsc"
    if not exe.is_file():
        npm = shutil.which("npm")
        assert npm, "npm is not installed: run scripts/bootstrap (the scaffold tests compile TypeScript)"
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--loglevel=warn",
                        TYPESCRIPT], check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    return exe


def compile_ts(source: Path, out_dir: Path) -> subprocess.CompletedProcess:
    """``tsc --strict`` of one file to CommonJS in ``out_dir`` (the libs a Next.js app has)."""
    return subprocess.run([str(tsc()), "--strict", "--noUnusedLocals", "--target", "es2022", "--module", "commonjs",
                           "--lib", "es2022,dom", "--outDir", str(out_dir), str(source)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
