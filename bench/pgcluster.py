"""A PostgreSQL server for the benchmark: a throwaway cluster, or the one in BENCH_PG_URL.

The throwaway cluster is made with initdb in a temporary folder, listens on 127.0.0.1 and a
free port only, trusts local connections (nothing but this machine can reach it), and is
tuned for bulk loads. When this process runs as root, the server runs as the ``postgres``
OS user (``runuser -u postgres``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")

# A parallel query's or index build's leader works too: one helper fewer than cores keeps one
# process per core (on 2 cores, 2 helpers made validate's day aggregate 8 % slower than 1).
PARALLEL_HELPERS = str(max(1, (os.cpu_count() or 2) - 1))

# Same settings for every contender. fsync/full_page_writes off: the benchmark measures the
# work each contender makes PostgreSQL and itself do, not the disk's flush latency; nothing
# here needs to survive a crash. The rest is ordinary bulk-load tuning for a 2-core, 24 GiB box.
BULK_LOAD_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "50",
    "shared_buffers": "2GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "effective_cache_size": "12GB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "wal_buffers": "64MB",
    "max_wal_size": "16GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "synchronous_commit": "off",
    "fsync": "off",
    "full_page_writes": "off",
    "autovacuum": "off",
    "max_parallel_workers_per_gather": PARALLEL_HELPERS,
    "max_parallel_maintenance_workers": PARALLEL_HELPERS,
    "jit": "off",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "logging_collector": "off",
    "log_min_messages": "warning",
    # server-side time of every statement of 100 ms or more: the bench reports them per contender
    "log_min_duration_statement": "100",
    "log_line_prefix": "'%m [%p] %d '",
}


def find_pg_bin() -> Path:
    env = os.environ.get("BENCH_PG_BIN")
    candidates = [env] if env else []
    candidates += list(PG_BIN_CANDIDATES)
    for c in candidates:
        if c and (Path(c) / "initdb").exists():
            return Path(c)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(os.path.realpath(pg_ctl)).parent
    raise RuntimeError(
        "no PostgreSQL server binaries found (looked in %s); install PostgreSQL 15 "
        "(apt-get install -y postgresql) or set BENCH_PG_URL" % ", ".join(PG_BIN_CANDIDATES)
    )


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """Where to reach the server: libpq URL of its maintenance database."""

    admin_url: str  # postgresql://user[:pw]@host:port/dbname
    logfile: Path | None = None  # the server's log, when it is our own cluster

    def url(self, dbname: str) -> str:
        p = urllib.parse.urlsplit(self.admin_url)
        return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, ""))

    @staticmethod
    def sqlalchemy(url: str) -> str:
        """libpq URL -> SQLAlchemy URL with the psycopg2 driver."""
        scheme, rest = url.split("://", 1)
        return "postgresql+psycopg2://" + rest

    @property
    def host_port(self) -> tuple[str, int]:
        p = urllib.parse.urlsplit(self.admin_url)
        return p.hostname or "127.0.0.1", p.port or 5432


class ThrowawayCluster:
    def __init__(self, pg_dir: Path | None = None):
        """pg_dir: a folder kept between runs (initdb only the first time); else a temp folder."""
        self.bin = find_pg_bin()
        self.keep = pg_dir is not None
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if pg_dir is not None:
            pg_dir.mkdir(parents=True, exist_ok=True)
            base = pg_dir.resolve()
        else:
            base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.base = base
        self.datadir = base / "data"
        self.sockdir = base / "sock"
        self.logfile = base / "server.log"
        self.user = "postgres" if self.as_postgres else pwd.getpwuid(os.geteuid()).pw_name
        # trust auth ignores it, but some clients (dlt) insist on a password in the URL
        self.server = Server(f"postgresql://{self.user}:pw4bench7x@127.0.0.1:{self.port}/postgres",
                             logfile=self.logfile)

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--"] + args
        return subprocess.run(args, check=True, **kw)

    def start(self) -> Server:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        # (re)written at every start, so a kept cluster gets the current settings too
        (self.datadir / "postgresql.auto.conf").write_text(
            "".join(f"{k} = {v}\n" for k, v in BULK_LOAD_SETTINGS.items()))
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
             "-o", f"-p {self.port} -k {self.sockdir}", "-w", "-t", "60", "start"],
            stdout=subprocess.DEVNULL,
        )
        return self.server

    def _initdb(self) -> None:
        shutil.rmtree(self.datadir, ignore_errors=True)
        self._run(
            [str(self.bin / "initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                       "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def server(pg_dir: Path | None = None):
    """Yield a Server: BENCH_PG_URL's if set, else a cluster of our own, stopped afterwards
    (and deleted, unless it lives in pg_dir to be reused by the next run)."""
    url = os.environ.get("BENCH_PG_URL")
    if url:
        yield Server(url), "BENCH_PG_URL"
        return
    cluster = ThrowawayCluster(pg_dir)
    try:
        t0 = time.monotonic()
        srv = cluster.start()
        kind = f"cluster kept in {cluster.base}" if cluster.keep else "throwaway cluster"
        yield srv, f"{kind}, {cluster.bin}, port {cluster.port} (started in {time.monotonic() - t0:.1f}s)"
    finally:
        cluster.stop()
