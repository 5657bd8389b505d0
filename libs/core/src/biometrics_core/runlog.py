"""``etl_runs``: one row per stage run with its manifest (data volume and error-rate figures)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from .manifest import RunManifest
from .warehouse import RUNS_TABLE

_INSERT = sa.text(
    f"INSERT INTO {RUNS_TABLE} (run_id, stage, command, date, status, started_at, duration_seconds, rows_in, "
    "rows_out, rows_rejected, error_rate, manifest) VALUES (:run_id, :stage, :command, :date, :status, "
    ":started_at, :duration_seconds, :rows_in, :rows_out, :rows_rejected, :error_rate, :manifest)")


def _params(manifest: RunManifest) -> dict:
    return {
        "run_id": manifest.run_id, "stage": manifest.stage, "command": manifest.command,
        "date": dt.date.fromisoformat(manifest.date) if manifest.date else None, "status": manifest.status,
        "started_at": dt.datetime.fromisoformat(manifest.started_at), "duration_seconds": manifest.duration_seconds,
        "rows_in": manifest.rows_in, "rows_out": manifest.rows_out, "rows_rejected": manifest.rejected_total,
        "error_rate": manifest.error_rate, "manifest": manifest.to_json(),
    }


def record_runs(conn: sa.Connection, manifests: list[RunManifest]) -> None:
    """Insert the runs not yet recorded (a run is recorded once, however often load reruns)."""
    if not manifests:
        return
    ids = [m.run_id for m in manifests]
    known = set(conn.execute(sa.text(f"SELECT run_id FROM {RUNS_TABLE} WHERE run_id IN :ids")
                             .bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).scalars())
    fresh = [_params(m) for m in manifests if m.run_id not in known]
    if fresh:
        conn.execute(_INSERT, fresh)


def record_run(engine: sa.Engine, manifest: RunManifest) -> None:
    with engine.begin() as conn:
        record_runs(conn, [manifest])


