"""Real servers for tests, started by the test setup: a throwaway PostgreSQL cluster and moto's S3.

Both listen on 127.0.0.1 only. ``BIOMETRICS_TEST_PG_URL`` / ``BIOMETRICS_TEST_S3_URL`` point the
tests at servers you already run instead.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


def postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql)")


class PostgresServer:
    """A PostgreSQL server with password authentication for a superuser."""

    def __init__(self, admin_url: str, stop=None):
        self.admin_url = admin_url
        self._stop = stop
        self.url = sa.engine.make_url(admin_url)

    @classmethod
    def start(cls) -> "PostgresServer":
        bindir = postgres_bin_dir()
        base = Path(tempfile.mkdtemp(prefix="biometrics-pg-"))
        data, sock = base / "data", base / "sock"
        sock.mkdir()
        password = "pw-" + secrets.token_hex(8)
        (base / "pwfile").write_text(password + "\n")
        port = free_port()
        run_as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(base, "postgres")
            for p in (sock, base / "pwfile"):
                shutil.chown(p, "postgres")
            os.chmod(base, 0o755)
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={base / 'pwfile'}", "-E", "UTF8", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100 -c shared_buffers=128MB")
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                        str(base / "server.log"), "-w", "-t", "60", "start"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def stop() -> None:
            subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(base, ignore_errors=True)

        return cls(f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{port}/postgres", stop)

    @property
    def password(self) -> str:
        return self.url.password or ""

    def url_for(self, database: str, password: str | None = None) -> str:
        url = self.url.set(database=database)
        if password is not None:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url_for(name)

    def stop(self) -> None:
        if self._stop:
            self._stop()


class S3Server:
    """moto's standalone S3 server (a real HTTP endpoint)."""

    access_key = "testing-key"
    secret_key = "testing-secret-value"
    region = "us-east-1"

    def __init__(self, url: str, process: subprocess.Popen | None = None):
        self.url = url
        self._process = process

    @classmethod
    def start(cls) -> "S3Server":
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError("moto_server exited: is moto[server] installed?")
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                    return True
            except OSError:
                return False

        _wait(up, 60, "the S3 endpoint (moto_server)")
        return cls(url, process)

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.url}

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def stop(self) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(10)


class CuttingProxy:
    """A TCP relay on 127.0.0.1 in front of a server, which breaks every connection once the clients
    have sent it ``budget`` bytes (and refuses new ones): a network that fails mid-upload, for real.
    ``url`` is the server's URL with the relay's port."""

    def __init__(self, server_url: str, budget: int):
        parsed = urlparse(server_url)
        self._target = (parsed.hostname, parsed.port)
        self._budget, self._sent, self._lock = budget, 0, threading.Lock()
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{parsed.scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self.cut.is_set():
                client.close()
                continue
            server = socket.create_connection(self._target)
            threading.Thread(target=self._relay, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while not self.cut.is_set() and (data := source.recv(65536)):
                if counted:
                    with self._lock:
                        self._sent += len(data)
                        if self._sent > self._budget:
                            self.cut.set()
                            return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def close(self) -> None:
        self.cut.set()
        self._listener.close()
