"""Peak memory (RSS) of the operator's upload path: ``upload_stream`` of N bytes of barely compressible
data into a local S3 endpoint (moto's server, a separate process on 127.0.0.1), with the part size
``backup.db`` picks for a database of that size, with and without client-side encryption.

    .venv/bin/python -m bench.upload_memory --gib 1.2

Each case runs in a fresh child process (so one's peak does not hide another's) and reports its
``ru_maxrss``. Only 127.0.0.1 is contacted; the bucket is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

MiB = 1024 * 1024


class Incompressible:
    """``n`` bytes that gzip cannot shrink (a repeated 4 MiB block of random bytes), read like a pipe."""

    def __init__(self, n: int):
        self.left = n
        self.block = os.urandom(4 * MiB)
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        out = bytearray()
        while len(out) < size:
            take = min(size - len(out), len(self.block) - self.pos)
            out += self.block[self.pos:self.pos + take]
            self.pos = (self.pos + take) % len(self.block)
        self.left -= len(out)
        return bytes(out)


def _child(endpoint: str, size: int, encrypted: bool) -> None:
    import boto3
    from botocore.config import Config

    from ops.backup import crypto
    from ops.backup.stream_upload import part_size_for, upload_stream

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench",
                          config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                        response_checksum_validation="when_required"))
    part = part_size_for(size)
    enc = crypto.Encryptor("bench passphrase", "db-20261129T000000Z-000000") if encrypted else None
    t0 = time.monotonic()
    result = upload_stream(client, "bench-memory", f"obj-{encrypted}", Incompressible(size), part_size=part,
                           encryptor=enc)
    seconds = time.monotonic() - t0
    client.delete_object(Bucket="bench-memory", Key=f"obj-{encrypted}")
    print(json.dumps({"bytes": size, "encrypted": encrypted, "part_mib": part // MiB, "parts": result.parts,
                      "seconds": round(seconds, 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.child[2] == "1")
        return
    port = _free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # bounded: ~10 s
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3
        from botocore.config import Config

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench", config=Config(s3={"addressing_style": "path"})
                     ).create_bucket(Bucket="bench-memory")
        size = int(args.gib * 1024**3)
        for encrypted in (False, True):
            out = subprocess.run([sys.executable, "-m", "bench.upload_memory", "--child", endpoint, str(size),
                                  "1" if encrypted else "0"], capture_output=True, text=True, timeout=1800,
                                 check=True)
            print(out.stdout.strip())
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
