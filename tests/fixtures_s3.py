"""A real S3-compatible HTTP endpoint on 127.0.0.1 for the object-storage tests: moto's server mode.

The jobs under test talk to it exactly as to AWS: pyarrow's S3 filesystem, configured only by
the standard environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``). The server runs in its own process group
and is stopped by its own handle.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

MOTO = str(Path(sys.executable).parent / "moto_server")


@dataclass
class S3Endpoint:
    """The running endpoint and the environment that points AWS clients at it.

    Args:
        url: ``http://127.0.0.1:PORT``.
        env: ``AWS_*`` variables to add to a job's environment.
    """

    url: str
    env: dict[str, str]

    def job_env(self, **extra: str) -> dict[str, str]:
        """This process's environment plus the endpoint (without a ``RAY_ADDRESS``)."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(self.env, **extra)
        return env

    def filesystem(self):
        """A pyarrow S3 filesystem on this endpoint built from explicit arguments (the test's own view)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                                 endpoint_override=self.url.split("://", 1)[1], scheme="http",
                                 allow_bucket_creation=True)

    def create_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return f"s3://{name}"

    def upload(self, local: Path, uri: str) -> None:
        """Copy a local file or folder to ``uri`` (``s3://bucket/key``)."""
        import pyarrow.fs as pafs

        fs, dest = self.filesystem(), uri.split("://", 1)[1]
        if Path(local).is_dir():
            pafs.copy_files(str(local), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        else:
            with open(local, "rb") as f, fs.open_output_stream(dest) as out:
                out.write(f.read())

    def list(self, uri: str, suffix: str = "") -> list[str]:
        """Keys under ``uri`` (recursive) ending with ``suffix``, relative to it, sorted."""
        import pyarrow.fs as pafs

        fs, root = self.filesystem(), uri.split("://", 1)[1].rstrip("/")
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        return sorted(i.path[len(root) + 1:] for i in infos
                      if i.type == pafs.FileType.File and i.path.endswith(suffix))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> S3Endpoint:
    """moto_server on a free port of 127.0.0.1 for the whole session."""
    if not Path(MOTO).exists():
        pytest.fail(f"{MOTO} not found: the dev extra installs moto[server] (pip install -e '.[dev]')")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"moto_server did not answer at {url}; see {log.name}")
                time.sleep(0.3)
        yield S3Endpoint(url, {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.close()
