"""Settings come from the environment only (never from arguments: Airflow shows arguments).

Every variable the stages read is declared here, once, with its default; the README's
configuration table is generated from ``SETTINGS`` (see ``describe()``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str
    secret: bool = False
    kind: str = "text"  # how its value is checked: text, int, size, postgres_size, ratio, level
    minimum: int = 1                    # (int)
    maximum: int | None = None          # (int; None: a C int's largest)


SETTINGS: tuple[Setting, ...] = (
    Setting("BIOMETRICS_DB_URL", None, "Application database (SQLAlchemy URL); source of readings.", True),
    Setting("BIOMETRICS_WAREHOUSE_URL", None, "Warehouse database (SQLAlchemy URL).", True),
    Setting("BIOMETRICS_BATCH_SIZE", "10000", "Rows a stage holds at once where it streams.", kind="int"),
    Setting("BIOMETRICS_EXTRACT_CONNECTIONS", "2", "Extract: parallel slices of the day read from PostgreSQL.",
            kind="int"),
    Setting("BIOMETRICS_INBOX_PATH", None, "Vendor inbox root; default `<staging-path>/inbox`. When set: an existing folder, or a prefix of an existing bucket."),
    Setting("BIOMETRICS_WORK_DIR", None, "Local scratch directory; default the system temp dir."),
    Setting("BIOMETRICS_MEMORY_LIMIT", "512MB", "Memory budget of the transform engine (DuckDB).", kind="size"),
    Setting("BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM", "1GB", "Load: PostgreSQL `maintenance_work_mem` of each of the "
            "two sessions that build the day's indexes at once (each sort stays in memory up to this size: the "
            "server may use twice it meanwhile).", kind="postgres_size"),
    Setting("BIOMETRICS_VALIDATE_WORK_MEM", "256MB", "Validate: PostgreSQL `work_mem` of its read-only snapshot "
            "(when a bucket disagrees, the group-by-group comparison's aggregate of ~300 k groups stays in "
            "memory; 4MB, the server default, makes it spill to disk).", kind="postgres_size"),
    Setting("BIOMETRICS_THREADS", None, "Threads of the transform engine (1-1024); default all cores.", kind="int",
            maximum=1024),
    Setting("BIOMETRICS_RETENTION_DAYS", "90", "Default `--retention-days` of `biometrics-backup purge`.", kind="int"),
    Setting("BIOMETRICS_VOLUME_MIN_RATIO", "0.5", "Validate: lowest accepted day volume / trailing 7-day mean.",
            kind="ratio"),
    Setting("BIOMETRICS_VOLUME_MAX_RATIO", "2.0", "Validate: highest accepted day volume / trailing 7-day mean.",
            kind="ratio"),
    Setting("BIOMETRICS_RESTORE_TARGET_URL", None, "Default `--target-url` of `biometrics-backup restore`.", True),
    Setting("BIOMETRICS_LOG_LEVEL", "INFO", "Log level of the stage (logs go to stderr).", kind="level"),
    Setting("AWS_ACCESS_KEY_ID", None, "S3 staging credentials (standard AWS variable).", True),
    Setting("AWS_SECRET_ACCESS_KEY", None, "S3 staging credentials (standard AWS variable).", True),
    Setting("AWS_SESSION_TOKEN", None, "S3 staging credentials: the session token of temporary keys (standard AWS "
            "variable; used with the two above).", True),
    Setting("AWS_DEFAULT_REGION", "us-east-1", "S3 region (standard AWS variable)."),
    Setting("AWS_ENDPOINT_URL", None, "S3-compatible endpoint, `http(s)://host[:port]` (MinIO, a local test server)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str) -> str | None:
    """The value of a declared setting, or its default."""
    setting = _BY_NAME[name]
    value = os.environ.get(name)
    return value if value not in (None, "") else setting.default


def require(name: str, purpose: str) -> str:
    value = get(name)
    if not value:
        raise ConfigError(f"{name} is not set: it must hold the {purpose}")
    return value


_INT_MAX = 2**31 - 1  # what the engines and drivers take as a count (a C int)


def get_int(name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole-number setting within its declared bounds (or the ones given)."""
    minimum = _BY_NAME[name].minimum if minimum is None else minimum
    maximum = (_BY_NAME[name].maximum or _INT_MAX) if maximum is None else maximum
    raw = get(name)
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    if value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum}")
    return value


def get_optional_int(name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """A whole-number setting whose absence means "let the engine decide"."""
    return get_int(name, minimum, maximum) if get(name) is not None else None


_SIZE = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.IGNORECASE)


# what PostgreSQL reads as a memory setting: a number, in kB without a unit (units case-sensitive)
_POSTGRES_SIZE = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*(B|kB|MB|GB|TB)?\s*")


def get_size(name: str) -> str:
    """A memory size such as 512MB or 1.5GiB (the form both DuckDB and PostgreSQL read)."""
    raw = get(name) or ""
    if not _SIZE.fullmatch(raw) or not float(re.sub(r"[^0-9.]", "", raw)) > 0:
        raise ConfigError(f"{name}={raw!r} is not a memory size such as 512MB or 2GB")
    return raw.strip()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(option: str | None) -> str:
    """``--log-level`` if given, else BIOMETRICS_LOG_LEVEL; ConfigError if that is not a level."""
    raw = option or get("BIOMETRICS_LOG_LEVEL") or "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"BIOMETRICS_LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return raw.upper()


def get_float(name: str) -> float:
    raw = get(name)
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def volume_bounds() -> tuple[float, float]:
    """Validate's accepted range of the day's volume against its trailing days."""
    low, high = get_float("BIOMETRICS_VOLUME_MIN_RATIO"), get_float("BIOMETRICS_VOLUME_MAX_RATIO")
    if not 0 <= low <= high:
        raise ConfigError(f"BIOMETRICS_VOLUME_MIN_RATIO={low} and BIOMETRICS_VOLUME_MAX_RATIO={high}: "
                          "expected 0 <= min <= max")
    return low, high


def check_all() -> None:
    """ConfigError for the first variable set to a value its kind refuses. Every stage checks them
    all when it starts: the DAG gives every container the same settings, and a value only a later
    stage reads (validate's ratios, the transform's threads) had let the extract, the transform and
    the load replace the warehouse's day before it failed."""
    for setting in SETTINGS:
        if os.environ.get(setting.name) in (None, ""):
            continue
        if setting.kind == "int":
            get_int(setting.name)
        elif setting.kind == "size":
            get_size(setting.name)
        elif setting.kind == "postgres_size" and not _POSTGRES_SIZE.fullmatch(os.environ[setting.name]):
            # the server has the last word (db.session_setting); this only spares the earlier stages
            raise ConfigError(f"{setting.name}={os.environ[setting.name]!r} is not a PostgreSQL memory size "
                              "(such as 256MB or 1GB)")
        elif setting.kind == "level":
            log_level(None)
    volume_bounds()  # the ratio kind: both numbers, and in order


def batch_size() -> int:
    return get_int("BIOMETRICS_BATCH_SIZE")


def source_url() -> str:
    return require("BIOMETRICS_DB_URL", "application database URL (source of readings)")


def warehouse_url() -> str:
    return require("BIOMETRICS_WAREHOUSE_URL", "warehouse database URL")


def describe() -> list[dict[str, str]]:
    """Rows of the configuration table (README)."""
    return [{"name": s.name, "default": s.default or "", "help": s.help, "secret": "yes" if s.secret else ""}
            for s in SETTINGS]
