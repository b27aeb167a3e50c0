"""moto's S3 server (PyPI ``moto[server]``) on a free 127.0.0.1 port, with one bucket: durable
storage for tansu (``s3://bucket/``) that outlives a broker process, for the broker-restart test::

    with S3Server.start("tansu") as s3:
        Tansu.start(storage=s3.storage_url, env=s3.env)

The objects live in the moto process's memory, so they last as long as it runs (the test's span);
tansu writes them with conditional PUTs (``If-Match``/``If-None-Match``), which moto honours.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from services.testing import ChildServer
from services.testing.tansu import free_port


@dataclass
class S3Server(ChildServer):
    port: int
    bucket: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/"

    @property
    def env(self) -> dict[str, str]:
        """What tansu's S3 client (``object_store``, from the environment) needs to reach it."""
        return {"AWS_ENDPOINT": self.url, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    @classmethod
    def start(cls, bucket: str = "tansu", timeout: float = 30.0) -> S3Server:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(port, bucket, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto's S3 server exited with {process.returncode}")
            try:
                made = httpx.put(f"{server.url}/{bucket}", timeout=5)  # CreateBucket (moto checks no signature)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if made.status_code != 200:
                server.stop()
                raise RuntimeError(f"creating bucket {bucket}: {made.status_code} {made.text[:500]}")
            return server
        server.stop()
        raise RuntimeError(f"moto's S3 server did not answer on {port} within {timeout} s")
