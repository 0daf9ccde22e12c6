"""A bare host on the sandbox network for ``inv setup``: sshd + root with the sandbox key.

Built from ``ops/sandbox/bare.Dockerfile`` on the sandbox's Debian base (tag = hash of
the file and the base id: cached), run with the Docker-in-Docker flags of the fleet
(``setup`` installs and starts a dockerd inside), its /var/lib/docker on a volume. It
carries ``ops.sandbox=bare``, not the fleet's label: ``inv sandbox.down`` and the fleet
checks leave it alone; the fixture removes it (and its volume) at teardown.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from ops.sandbox import fleet
from ops.sandbox.images import BASE_IMAGE, ensure_base, image_id

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "ops" / "sandbox" / "bare.Dockerfile"
NAME = "bare1"
CONTAINER = f"ops-bare-{NAME}"
VOLUME = f"{CONTAINER}-docker"
SSH_PORT = 22109
ADDRESS = "172.31.250.31"


def docker(*args: str, check: bool = True, timeout: float = 120, stdin: bytes | None = None):
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.decode(errors='replace')[-400:]}")
    return proc


def ensure_image() -> str:
    ensure_base()
    base = image_id(BASE_IMAGE) or ""
    tag = "ops-sandbox/bare:" + hashlib.sha256(DOCKERFILE.read_bytes() + base.encode()).hexdigest()[:12]
    if not image_id(tag):
        docker("build", "--pull=false", "-q", "--build-arg", f"BASE={BASE_IMAGE}", "-f", str(DOCKERFILE),
               "-t", tag, str(DOCKERFILE.parent), timeout=900)
    return tag


def remove() -> None:
    docker("rm", "-f", "-v", CONTAINER, check=False)
    docker("volume", "rm", "-f", VOLUME, check=False)


def start(network: str, public_key: str) -> None:
    """A fresh bare host (any previous one removed first)."""
    image = ensure_image()
    remove()
    docker("create", "--name", CONTAINER, "--hostname", NAME, "--label", "ops.sandbox=bare",
           *fleet.DIND_FLAGS, "-v", f"{VOLUME}:/var/lib/docker",
           "--network", network, "--ip", ADDRESS, "-p", f"127.0.0.1:{SSH_PORT}:22", image)
    docker("start", CONTAINER)
    docker("exec", "-i", CONTAINER, "sh", "-c",
           "cat > /root/.ssh/authorized_keys && chmod 0600 /root/.ssh/authorized_keys",
           stdin=public_key.encode())
    deadline = time.monotonic() + 30
    while docker("exec", CONTAINER, "sh", "-c", "ls /etc/ssh/ssh_host_ed25519_key.pub", check=False).returncode:
        if time.monotonic() > deadline:
            raise AssertionError("bare host: sshd never made its host keys")
        time.sleep(0.2)


def root(script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``script`` as root on the bare host from outside (what the test looks at, not the tool)."""
    return docker("exec", CONTAINER, "sh", "-c", script, check=check, timeout=timeout)
