#!/usr/bin/env python3
"""`make bench`: the daily job side by side with the COPY ceiling, the seed-style baseline and dlt.

One run, all contenders on the same seeded day on the same PostgreSQL, printed as a table
and written as JSON to bench/results/<timestamp>.json. Standard library only: it runs with
any Python 3.11 and talks to PostgreSQL through psql; each contender runs in its own venv.

  python3 bench/run.py --size 1000000
  python3 bench/run.py --size 100000 --only ceiling,pipeline

Environment: BENCH_PG_URL (a server to use instead of a throwaway cluster; a superuser URL
such as postgresql://postgres@127.0.0.1:5432/postgres), BENCH_IMAGE_TAG (image tag for the
container-overhead run), BENCH_PG_BIN (PostgreSQL bin folder), BENCH_PG_DIR (keep our cluster there).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import pgcluster  # noqa: E402
import profile_summary  # noqa: E402
import report  # noqa: E402
import seed  # noqa: E402
import venvs  # noqa: E402
from pgsql import BENCH_TAG, psql, psql_cmd, recreate_database  # noqa: E402
from procs import run_measured  # noqa: E402

STAGES = ("extract", "transform", "load", "validate")
# dlt contenders: (sql_database backend, loader_file_format). None is dlt's own choice for arrow data
# into postgres (csv); "parquet" is loaded with ADBC (adbc-driver-postgresql), dlt's opt-in fast path.
DLT_VARIANTS = {
    "dlt-pyarrow": ("pyarrow", None),
    "dlt-connectorx": ("connectorx", None),
    "dlt-connectorx-adbc": ("connectorx", "parquet"),
}
ALL_CONTENDERS = ("ceiling", "pipeline", "pipeline-docker", "seed-style", *DLT_VARIANTS)
DB_SRC = "bench_src"
KEEP_WORK_DIRS = 20  # bench/.work/<timestamp>/ folders (logs) kept
IMAGES_FILE = REPO / "dags" / "biometrics_images.json"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    info = {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip() or None
    except OSError:
        info["git_commit"] = None
    return info


def day_bounds(day: dt.date) -> tuple[str, str]:
    return f"{day.isoformat()} 00:00:00+00", f"{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00"


class Bench:
    def __init__(self, args, server, run_dir: Path):
        self.a = args
        self.server = server
        self.run_dir = run_dir
        self.day = args.date
        self.src_url = server.url(DB_SRC)
        self.timeout = args.timeout
        self.day_rows = 0
        self._windows: dict[int, dict] = {}

    def env(self, **extra) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith("BIOMETRICS_")}
        e.update({"PGTZ": "UTC", "TZ": "UTC", "PYTHONUNBUFFERED": "1", "RUNTIME__DLTHUB_TELEMETRY": "false",
                  "RUNTIME__LOG_LEVEL": "WARNING"})
        e.update(extra)
        return e

    def quiesce(self) -> None:
        """Between contenders: flush dirty buffers so no checkpoint lands inside the next one, then
        have the kernel write them out. With fsync off a CHECKPOINT only hands its pages to the page
        cache: a first load of the 10 M day left 2 GB dirty there, which the kernel's writeback
        (after 30 s) would otherwise write while the next contender runs (sync: 0.8 s, untimed)."""
        psql(self.server.admin_url, "CHECKPOINT")
        os.sync()

    def fresh_wh(self, name: str) -> str:
        return recreate_database(self.server, f"bench_wh_{name.replace('-', '_')}")

    def rate(self, rows: int, seconds: float) -> float:
        return round(rows / seconds) if seconds > 0 else None

    # ---- 3. the COPY ceiling -------------------------------------------------------------
    def ceiling(self) -> dict:
        wh = self.fresh_wh("ceiling")
        psql(wh, seed.SOURCE_DDL)
        d0, d1 = day_bounds(self.day)
        out_sql = (f"COPY (SELECT * FROM raw_biometric_data WHERE created_at >= '{d0}' "
                   f"AND created_at < '{d1}') TO STDOUT (FORMAT binary)")
        in_sql = "COPY raw_biometric_data FROM STDIN (FORMAT binary)"
        q = lambda s: "'" + s.replace("'", "'\\''") + "'"  # noqa: E731
        src_cmd = " ".join(q(x) for x in psql_cmd(self.src_url))
        wh_cmd = " ".join(q(x) for x in psql_cmd(wh))
        script = f"set -o pipefail; {src_cmd} -c {q(out_sql)} | {wh_cmd} -c {q(in_sql)}"
        self.quiesce()
        m = run_measured(["bash", "-c", script], env=self.env(), log_prefix=self.run_dir / "ceiling",
                         timeout=self.timeout)
        if not m.ok:
            raise RuntimeError(f"ceiling failed: {m.error_text()}")
        rows = int(psql(wh, "SELECT count(*) FROM raw_biometric_data"))
        return {"status": "ok", "rows": rows, "wall_s": round(m.wall_s, 3),
                "rows_per_s": self.rate(rows, m.wall_s), "max_rss_mib": round(m.max_rss_kib / 1024, 1),
                "machine_cpu_s": m.machine_cpu_s,
                "note": "psql COPY (binary) | psql COPY into a table with a primary key; no cleaning"}

    # ---- 2. this pipeline, local processes ----------------------------------------------
    def stage_argv(self, stage: str, staging: str) -> list[str]:
        return ["readings", "--date", self.day.isoformat(), "--staging-path", staging]

    def pipeline(self) -> dict:
        bindir = Path(self.a.pipeline_bin)
        stage_list = [s for s in self.a.stages.split(",") if s]
        missing = [s for s in stage_list if not (bindir / f"biometrics-{s}").exists()]
        if missing:
            raise RuntimeError(f"pipeline not installed: no {', '.join('biometrics-' + s for s in missing)} "
                               f"in {bindir} (make venv)")
        wh = self.fresh_wh("pipeline")
        staging = self.run_dir / "staging-pipeline"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        env = self.env(BIOMETRICS_DB_URL=self.server.sqlalchemy(self.src_url),
                       BIOMETRICS_WAREHOUSE_URL=self.server.sqlalchemy(wh))
        if self.a.batch_size:
            env["BIOMETRICS_BATCH_SIZE"] = str(self.a.batch_size)
        stages, total = {}, 0.0
        self.quiesce()
        for s in stage_list:
            argv = [str(bindir / f"biometrics-{s}"), *self.stage_argv(s, str(staging))]
            raw = self.run_dir / f"profile-{s}.txt"
            if self.a.profile:  # wall-clock samples; the timings of a profiled run are not the benchmark's
                argv = [self.pyspy, "record", "--idle", "-r", "200", "-f", "raw", "-o", str(raw), "--", *argv]
            m = run_measured(argv, env=env, log_prefix=self.run_dir / f"pipeline-{s}", timeout=self.timeout)
            stages[s] = {"wall_s": round(m.wall_s, 3), "rows_per_s": self.rate(self.day_rows, m.wall_s),
                         "max_rss_mib": round(m.max_rss_kib / 1024, 1), "cpu_s": round(m.user_s + m.sys_s, 2),
                         "machine_cpu_s": m.machine_cpu_s, "manifest": m.last_json}
            if self.a.profile and raw.exists():
                stages[s]["profile"] = profile_summary.summarise(str(raw))
                stages[s]["profile"]["raw"] = str(raw)
                print(profile_summary.format_summary(s, stages[s]["profile"]), file=sys.stderr)
            total += m.wall_s
            log(f"  pipeline {s:<9} {m.wall_s:7.2f}s  peak RSS {m.max_rss_kib / 1024:7.1f} MiB")
            if not m.ok:
                raise RuntimeError(f"pipeline stage {s} failed ({' '.join(argv)}): {m.error_text()}",
                                   {"stages": stages})
        staging_bytes = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        out = {"status": "ok", "rows": self.day_rows, "wall_s": round(total, 3),
               "rows_per_s": self.rate(self.day_rows, total),
               "max_rss_mib": max(v["max_rss_mib"] for v in stages.values()),
               "machine_cpu_s": _sum_known(v["machine_cpu_s"] for v in stages.values()),
               "stages": stages, "staging_bytes": staging_bytes,
               "check": self.check_daily_metrics(wh),
               "note": "four console scripts run one after another, staging on local disk"}
        if not self.a.keep_staging:
            shutil.rmtree(staging, ignore_errors=True)
        return out

    def expected_daily_metrics(self) -> dict:
        """The day's clean aggregate by the data contract, computed in SQL on the source."""
        if hasattr(self, "_expected"):
            return self._expected
        d0, d1 = day_bounds(self.day)
        # duplicates of a valid reading are exact copies in the seeded data, so min(v) per key is the kept value
        sql = f"""
        SET work_mem = '1GB';
        {BENCH_TAG}WITH d AS (
            SELECT user_id, device_id, metric_type, created_at, {seed.canonical_value_sql()} AS v
            FROM raw_biometric_data
            WHERE created_at >= '{d0}' AND created_at < '{d1}'
        ), c AS (
            SELECT user_id, metric_type, min(v) AS v
            FROM d WHERE v IS NOT NULL AND v <> 'NaN'::float8 AND {seed.in_range_sql('v')}
            GROUP BY user_id, device_id, metric_type, created_at
        ), g AS (
            SELECT count(*) AS n, sum(v) AS s FROM c GROUP BY user_id, metric_type
        )
        SELECT count(*), sum(n), round(sum(s)::numeric, 3) FROM g"""
        groups, samples, total = psql(self.src_url, sql).split("|")
        self._expected = {"groups": int(groups), "samples": int(samples), "sum_value": float(total)}
        return self._expected

    def check_daily_metrics(self, wh: str) -> dict:
        """Compare the warehouse's daily_metrics with the SQL reference (a sanity check, not a test)."""
        try:
            got = psql(wh, f"SELECT count(*), sum(sample_count), round(sum(sum_value)::numeric, 3) "
                           f"FROM daily_metrics WHERE date = '{self.day.isoformat()}'").split("|")
            got_d = {"groups": int(got[0]), "samples": int(got[1] or 0), "sum_value": float(got[2] or 0)}
        except Exception as e:  # noqa: BLE001 - informative only
            return {"ok": False, "error": str(e)[:300]}
        exp = self.expected_daily_metrics()
        ok = (got_d["groups"] == exp["groups"] and got_d["samples"] == exp["samples"]
              and abs(got_d["sum_value"] - exp["sum_value"]) <= 1e-6 * max(1.0, abs(exp["sum_value"])))
        return {"ok": ok, "warehouse": got_d, "expected": exp}

    # ---- 4./5. contenders in their own venvs, possibly capped ----------------------------
    def window(self, cap: int) -> dict:
        """The rows a capped contender moves: the first `cap` of the day by created_at."""
        d0, d1 = day_bounds(self.day)
        if not cap or self.day_rows <= cap:
            return {"start": d0, "end": d1, "rows": self.day_rows, "scale": 1.0, "capped": False}
        if cap not in self._windows:
            end = psql(self.src_url, f"SELECT created_at FROM raw_biometric_data WHERE created_at >= '{d0}' "
                                     f"AND created_at < '{d1}' ORDER BY created_at OFFSET {cap} LIMIT 1")
            rows = int(psql(self.src_url, f"SELECT count(*) FROM raw_biometric_data WHERE created_at >= '{d0}' "
                                          f"AND created_at < '{end}'"))
            self._windows[cap] = {"start": d0, "end": end, "rows": rows, "scale": self.day_rows / rows,
                                  "capped": True}
        return self._windows[cap]

    def in_venv(self, name: str, python: str, script: str, extra: list[str], wh: str, cap: int) -> dict:
        w = self.window(cap)
        argv = [python, str(BENCH / "contenders" / script), "--src-url", self.server.sqlalchemy(self.src_url),
                "--wh-url", self.server.sqlalchemy(wh), "--day", self.day.isoformat(),
                "--start", w["start"].replace(" ", "T"), "--end", w["end"].replace(" ", "T"), *extra]
        self.quiesce()
        m = run_measured(argv, env=self.env(), log_prefix=self.run_dir / name, timeout=self.timeout,
                         cwd=str(self.run_dir))
        if not m.ok:
            raise RuntimeError(f"{name} failed: {m.error_text()}")
        inner = m.last_json or {}
        scaled = m.wall_s * w["scale"]
        out = {"status": "ok", "rows": w["rows"], "measured_wall_s": round(m.wall_s, 3),
               "wall_s": round(scaled, 3), "rows_per_s": self.rate(w["rows"], m.wall_s),
               "machine_cpu_s": None if m.machine_cpu_s is None else round(m.machine_cpu_s * w["scale"], 2),
               "max_rss_mib": round(m.max_rss_kib / 1024, 1), "phases": inner.get("phases"),
               "detail": {k: v for k, v in inner.items() if k != "phases"}}
        if w["capped"]:
            out["capped"] = {"rows": w["rows"], "of": self.day_rows, "scale": round(w["scale"], 4),
                             "note": f"capped at {w['rows']:,} of {self.day_rows:,} rows; wall and CPU time scaled "
                                     f"linearly x{w['scale']:.2f}; peak RSS is the capped run's"}
        return out

    def seed_style(self) -> dict:
        wh = self.fresh_wh("seed-style")
        psql(wh, seed.SOURCE_DDL + "; " + DAILY_METRICS_ORIGINAL)
        out = self.in_venv("seed-style", self.venv_python["seed-style"], "seed_style.py", [], wh, self.a.cap_seed_style)
        out["note"] = "pandas.read_sql + DataFrame.to_sql + original INSERT…SELECT AVG GROUP BY; no cleaning"
        return out

    def dlt(self, name: str) -> dict:
        backend, file_format = DLT_VARIANTS[name]
        info = self.venv_info["dlt"]
        if any(p.startswith(backend) for p in info["optional_missing"]):
            return {"status": "skipped", "note": f"{backend} did not install"}
        wh = self.fresh_wh(name)
        psql(wh, DAILY_METRICS_ORIGINAL)
        pdir = self.run_dir / f"dlt-pipelines-{name}"
        shutil.rmtree(pdir, ignore_errors=True)
        extra = ["--backend", backend, "--pipelines-dir", str(pdir)]
        if file_format:
            extra += ["--loader-file-format", file_format]
        out = self.in_venv(name, self.venv_python["dlt"], "dlt_load.py", extra, wh, self.a.cap_dlt)
        formats = out["detail"].get("loader_file_formats") or ["?"]
        out["note"] = (f"dlt sql_table(backend={backend}) -> postgres destination, "
                       f"loader_file_format={file_format or 'default'} ({', '.join(formats)}"
                       f"{' via ADBC' if file_format == 'parquet' else ''}) + original GROUP BY; no cleaning")
        out["dlt"] = {"backend": backend, "loader_file_format": file_format or "default"}
        shutil.rmtree(pdir, ignore_errors=True)
        return out

    # ---- container overhead -------------------------------------------------------------
    def images(self) -> dict:
        """The stage images: --image-tag/--image-prefix if given, else the ones the DAGs run
        (dags/biometrics_images.json, written by `make build`), else <prefix><stage>:latest."""
        tagged = {s: f"{self.a.image_prefix}{s}:{self.a.image_tag or 'latest'}" for s in STAGES}
        if not self.a.image_tag:
            try:
                listed = json.loads(IMAGES_FILE.read_text()).get("images", {})
            except (OSError, ValueError):
                listed = {}
            if all(s in listed for s in STAGES) and all(self.image_exists(listed[s]) for s in STAGES):
                return {s: listed[s] for s in STAGES}
        return tagged

    @staticmethod
    def image_exists(ref: str) -> bool:
        return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0

    def pipeline_docker(self) -> dict:
        docker = shutil.which("docker")
        if not docker:
            return {"status": "skipped", "note": "no docker client"}
        try:
            r = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                               text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return {"status": "skipped", "note": "no engine (docker info timed out)"}
        if r.returncode != 0:
            return {"status": "skipped", "note": "no engine"}
        images = {s: i for s, i in self.images().items() if s in self.a.stages.split(",")}
        absent = [i for i in images.values() if not self.image_exists(i)]
        if absent:
            return {"status": "skipped", "note": f"no images ({', '.join(absent)}; make build)"}
        wh = self.fresh_wh("pipeline-docker")
        staging = self.run_dir / "staging-docker"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        staging.chmod(0o777)  # the images run as a non-root user
        env = self.env(BIOMETRICS_DB_URL=self.server.sqlalchemy(self.src_url),
                       BIOMETRICS_WAREHOUSE_URL=self.server.sqlalchemy(wh))
        stages, total = {}, 0.0
        self.quiesce()
        for s in [s for s in self.a.stages.split(",") if s]:
            argv = [docker, "run", "--rm", "--network", "host", "-e", "BIOMETRICS_DB_URL",
                    "-e", "BIOMETRICS_WAREHOUSE_URL", "-v", f"{staging}:/staging", images[s],
                    *self.stage_argv(s, "/staging")]
            m = run_measured(argv, env=env, log_prefix=self.run_dir / f"docker-{s}", timeout=self.timeout)
            stages[s] = {"wall_s": round(m.wall_s, 3), "machine_cpu_s": m.machine_cpu_s, "manifest": m.last_json}
            total += m.wall_s
            log(f"  docker   {s:<9} {m.wall_s:7.2f}s")
            if not m.ok:
                raise RuntimeError(f"docker stage {s} failed: {m.error_text()}", {"stages": stages})
        shutil.rmtree(staging, ignore_errors=True)
        return {"status": "ok", "rows": self.day_rows, "wall_s": round(total, 3),
                "rows_per_s": self.rate(self.day_rows, total), "stages": stages, "images": images,
                "machine_cpu_s": _sum_known(v["machine_cpu_s"] for v in stages.values()),
                "note": "the same four stages through `docker run --network host` of the images"}


DAILY_METRICS_ORIGINAL = """
CREATE TABLE daily_metrics (
    date DATE NOT NULL, user_id BIGINT NOT NULL, metric_type TEXT NOT NULL,
    value DOUBLE PRECISION, min_value DOUBLE PRECISION, max_value DOUBLE PRECISION,
    sum_value DOUBLE PRECISION, sample_count BIGINT,
    PRIMARY KEY (date, user_id, metric_type)
)"""


def _sum_known(values) -> float | None:
    """The sum, or None when any value is unknown (no /proc/stat)."""
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 2)


def server_log_offset(server) -> int:
    try:
        return server.logfile.stat().st_size if server.logfile else 0
    except OSError:
        return 0


SLOW_KEEP = 25
_SLOW = re.compile(r"^\S+ \S+ \S+ \[\d+\] (?P<db>\S*) LOG:  duration: (?P<ms>[\d.]+) ms  (?:statement|execute [^:]*): (?P<sql>.*)$")


def slow_statements(server, offset: int) -> list[dict]:
    """Statements of >= 100 ms the server logged since offset (our own cluster only), bench's own excluded."""
    if not server.logfile:
        return []
    try:
        with open(server.logfile, errors="replace") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return []
    out, current = [], None
    for line in text.splitlines():
        m = _SLOW.match(line)
        if m:
            current = {"ms": round(float(m["ms"])), "db": m["db"], "statement": m["sql"].strip()}
            out.append(current)
        elif current is not None and line.startswith(("\t", " ")) and len(current["statement"]) < 400:
            current["statement"] += " " + line.strip()
        else:
            current = None
    out = [dict(s, statement=re.sub(r"\s+", " ", s["statement"])[:400]) for s in out
           if not s["statement"].startswith(BENCH_TAG.strip())]
    if len(out) > SLOW_KEEP:  # keep the slowest, in the order they ran
        cut = sorted(s["ms"] for s in out)[-SLOW_KEEP]
        out = [s for s in out if s["ms"] >= cut][:SLOW_KEEP]
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=int(os.environ.get("SIZE") or 10_000_000),
                    help="readings of the day (default 10,000,000)")
    ap.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 1, 5))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all): " + ",".join(ALL_CONTENDERS))
    ap.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    ap.add_argument("--cap-seed-style", type=int, default=1_000_000,
                    help="rows the seed-style baseline moves when --size is larger, its time scaled linearly "
                         "(default 1,000,000: about 65 s per million rows here; 0: never cap)")
    ap.add_argument("--cap-dlt", type=int, default=0,
                    help="the same for dlt (default 0: never; it moves 10 M rows in well under 10 minutes)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per contender process")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the contenders this many times, interleaved, and report each one's median round "
                         "(a shared machine drifts: 3 rounds make the ratios trustworthy; default 1)")
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--pipeline-bin", default=str(REPO / ".venv" / "bin"))
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="pipeline stages to run (default all four; a subset is for profiling only)")
    ap.add_argument("--profile", action="store_true",
                    help="run each pipeline stage under py-spy (bench/.venvs/profile) and summarise hot spots; "
                         "its timings and RSS include the profiler")
    ap.add_argument("--batch-size", type=int, default=None, help="BIOMETRICS_BATCH_SIZE for the pipeline")
    ap.add_argument("--image-prefix", default=os.environ.get("BENCH_IMAGE_PREFIX", "biometrics/biometrics-"))
    ap.add_argument("--image-tag", default=os.environ.get("BENCH_IMAGE_TAG") or None,
                    help="image tag for the container run (default: the images in dags/biometrics_images.json)")
    ap.add_argument("--pg-dir", default=os.environ.get("BENCH_PG_DIR") or None,
                    help="keep our PostgreSQL cluster in this folder and reuse it (and its seeded day) next run")
    ap.add_argument("--keep-staging", action="store_true")
    ap.add_argument("--rss-reference", default=None,
                    help="results JSON of a 1 M run for the RSS-growth target (default: latest in results dir)")
    return ap.parse_args(argv)


def _median_round(runs: list[dict]) -> dict:
    """The round whose wall time is the median (a failed round wins: a failure must show), with every
    round's wall time beside it."""
    failed = [r for r in runs if r.get("status") != "ok"]
    if failed or len(runs) == 1:
        return failed[0] if failed else runs[0]
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_wall_s"] = [r["wall_s"] for r in runs]
    return chosen


def main(argv=None) -> int:
    a = parse_args(argv)
    only = [c for c in a.only.split(",") if c] or list(ALL_CONTENDERS)
    skip = {c for c in a.skip.split(",") if c}
    unknown = [c for c in only + list(skip) if c not in ALL_CONTENDERS]
    if unknown:
        print(f"unknown contender(s): {', '.join(unknown)}; known: {', '.join(ALL_CONTENDERS)}", file=sys.stderr)
        return 2
    chosen = [c for c in ALL_CONTENDERS if c in only and c not in skip]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_dir = Path(a.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    run_dir = BENCH / ".work" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(p for p in run_dir.parent.iterdir() if p.is_dir())[:-KEEP_WORK_DIRS]:
        shutil.rmtree(old, ignore_errors=True)  # logs of older runs
    result = {"timestamp": stamp, "size": a.size, "date": a.date.isoformat(), "seed": a.seed, "rounds": a.rounds,
              "caps": {"seed-style": a.cap_seed_style, "dlt": a.cap_dlt}, "machine": machine_info(),
              # git_commit above is this checkout's; --pipeline-bin may run another one's stages
              "pipeline_bin": a.pipeline_bin, "contenders": {}, "logs": str(run_dir)}
    log(f"N={a.size:,} day={a.date} cores={result['machine']['cores']} contenders={','.join(chosen)}")

    # venvs are built while PostgreSQL seeds (neither is timed)
    need = sorted({"seed-style"} & set(chosen) | ({"dlt"} if any(c.startswith("dlt-") for c in chosen) else set())
                  | ({"profile"} if a.profile else set()))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    venv_futures = {n: pool.submit(venvs.ensure, n, run_dir) for n in need}

    failed = False
    with pgcluster.server(Path(a.pg_dir) if a.pg_dir else None) as (server, desc):
        log(f"PostgreSQL: {desc}")
        result["postgres"] = {"how": desc, "version": psql(server.admin_url, "SHOW server_version")}
        bench = Bench(a, server, run_dir)
        if psql(server.admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{DB_SRC}'") == "1" \
                and seed.existing_seed(bench.src_url, a.size, a.date, a.seed):
            log("source already seeded with these parameters: reusing it")
            result["seeding"] = {"reused": True}
        else:
            recreate_database(server, DB_SRC)
            result["seeding"] = seed.seed(bench.src_url, a.size, a.date, a.seed, log=log)
        result["seeding"]["bad_records"] = seed.bad_record_counts(bench.src_url, a.date)
        bench.day_rows = result["seeding"]["bad_records"]["day_rows"]

        bench.venv_info, bench.venv_python = {}, {}
        for n, f in venv_futures.items():
            try:
                info = f.result()
                bench.venv_info[n], bench.venv_python[n] = info, info["python"]
                log(f"venv {n}: {'created in %.0fs' % info['seconds'] if info['created'] else 'reused'}")
            except Exception as e:  # noqa: BLE001
                log(f"venv {n} failed: {e}")
                bench.venv_info[n] = {"error": str(e)}
        result["venvs"] = bench.venv_info
        if a.profile:
            bench.pyspy = str(Path(bench.venv_python["profile"]).parent / "py-spy")
            result["profiled"] = "pipeline stages ran under py-spy: their times and RSS include it"

        runners = {"ceiling": bench.ceiling, "pipeline": bench.pipeline, "seed-style": bench.seed_style,
                   **{name: (lambda n=name: bench.dlt(n)) for name in DLT_VARIANTS},
                   "pipeline-docker": bench.pipeline_docker}
        rounds: dict[str, list[dict]] = {c: [] for c in chosen}
        for round_no in range(1, a.rounds + 1):
            if a.rounds > 1:
                log(f"round {round_no} of {a.rounds}")
            for c in chosen:
                venv_name = "seed-style" if c == "seed-style" else "dlt" if c.startswith("dlt-") else None
                if venv_name and "error" in bench.venv_info.get(venv_name, {}):
                    rounds[c].append({"status": "failed", "error": "venv: " + bench.venv_info[venv_name]["error"]})
                    failed = True
                    continue
                log(f"running {c}")
                log_mark = server_log_offset(server)
                try:
                    r = runners[c]()
                except Exception as e:  # noqa: BLE001 - one contender's failure must not hide the others
                    partial = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], dict) else {}
                    r = {"status": "failed", "error": str(e.args[0] if e.args else e)[:4000], **partial}
                    failed = True
                slow = slow_statements(server, log_mark)
                if slow:
                    r["slow_statements"] = slow
                rounds[c].append(r)
                if a.profile and c == "pipeline":
                    for st in slow:
                        print(f"  server {st['ms']:9.0f} ms  {st['db']}: {st['statement'][:140]}", file=sys.stderr)
                if r.get("status") == "ok":
                    log(f"  {c}: {r['wall_s']:.2f}s" + (" (scaled)" if r.get("capped") else ""))
                else:
                    log(f"  {c}: {r['status']}: {r.get('error') or r.get('note')}")
        for c, runs in rounds.items():
            result["contenders"][c] = _median_round(runs)
    pool.shutdown()

    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = report.targets(result, report.find_rss_reference(results_dir, a.rss_reference, a.size))
    result["cpu"] = report.cpu_summary(result)
    out = results_dir / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report.table(result))
    print(f"\nresults: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}   logs: {run_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
