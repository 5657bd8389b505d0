"""The run manifest: what one stage run did, printed as the last stdout line (Airflow's XCom)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from .staging import Staging


@dataclass
class RunManifest:
    stage: str
    command: str
    date: str | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    status: str = "success"
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    version: str = ""
    details: dict = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rows_rejected.values())

    @property
    def error_rate(self) -> float:
        return self.rejected_total / self.rows_in if self.rows_in else 0.0

    def reject(self, reason: str, count: int) -> None:
        if count:
            self.rows_rejected[reason] = self.rows_rejected.get(reason, 0) + int(count)

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["rows_rejected_total"] = self.rejected_total
        payload["error_rate"] = round(self.error_rate, 6)
        return payload

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str, separators=(",", ":"))

    @classmethod
    def from_dict(cls, payload: dict) -> "RunManifest":
        known = {k: v for k, v in payload.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def manifest_path(stage: str, command: str) -> str:
    """Where a stage leaves its manifest in staging (load records those in ``etl_runs``)."""
    return f"manifests/{stage}-{command}.json"


def upstream_manifest(staging: "Staging", stage: str, day: dt.date, command: str = "readings") -> dict | None:
    """The manifest an earlier stage left in ``staging`` (None if it left none).

    InputError if it is another day's: a stage run with the wrong ``--date`` against a staging path
    would otherwise process that day's data as this one's (the transform would reject every record
    as outside the day, the load would file the day's readings under the wrong date)."""
    rel = manifest_path(stage, command)
    if not staging.exists(rel):
        return None
    payload = staging.read_json(rel)
    if not isinstance(payload, dict):
        raise InputError(f"{staging.uri(rel)} is not a run manifest (a JSON object): rerun the {stage} stage")
    if payload.get("date") != day.isoformat():
        raise InputError(f"{staging.uri(rel)} is for {payload.get('date')}, not {day}: "
                         "the staging path holds another day's run")
    return payload


def required_upstream_manifest(staging: "Staging", stage: str, day: dt.date, why: str) -> dict:
    """``upstream_manifest``, which must be there: InputError naming the stage to run first and ``why``."""
    payload = upstream_manifest(staging, stage, day)
    if payload is None:
        raise InputError(f"missing {staging.uri(manifest_path(stage, 'readings'))}: run biometrics-{stage} "
                         f"readings for {day} first ({why})")
    return payload


def refuse_another_days_staging(staging: "Staging", day: dt.date) -> None:
    """InputError if any manifest in ``staging`` is another day's: the first stage of a day would
    otherwise replace that day's staged run with this one's (and read the vendors' inbox below it),
    and every later stage, finding this day's manifests, would take it for a good run."""
    for rel in staging.list_files("manifests", (".json",)):
        try:
            payload = staging.read_json(rel)
        except InputError:  # a manifest cut short (a full disk while it was written): its stage's rerun mends it
            continue
        date = payload.get("date") if isinstance(payload, dict) else None
        if date is not None and date != day.isoformat():
            raise InputError(f"{staging.uri(rel)} is for {date}, not {day}: the staging path holds another "
                             "day's run; give each day its own staging path")
