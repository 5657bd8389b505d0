"""The shared CLI of every stage: same options, same error handling, same manifest output.

A stage package declares ``main = stage_group("extract")`` and decorates its commands with
``@stage_command(main, "readings")``; the command body receives a ``StageRun`` and returns the
``RunManifest``. This module is the one place that maps errors to exit codes.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import click

from . import logs, settings
from .dates import parse_day
from .errors import EXIT_FAILED, EXIT_USAGE, EtlError
from .manifest import RunManifest, manifest_path
from .redact import leave_out_details, one_line, redact
from .staging import Staging

log = logging.getLogger("biometrics")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def fail(prog: str, message: str, code: int) -> None:
    click.echo(f"{prog}: error: {one_line(redact(message))}", err=True)
    sys.exit(code)


class StageGroup(click.Group):
    """A click group whose errors are one line on stderr with the contract's exit codes."""

    def main(self, args=None, prog_name=None, **extra):  # noqa: D102
        prog = prog_name or self.name or "biometrics"
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            fail(prog, "aborted", EXIT_FAILED)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path if exc.ctx else prog} --help)"  # the group's path is its name
            fail(prog, exc.format_message() + hint, EXIT_USAGE)
        except click.ClickException as exc:
            fail(prog, exc.format_message(), exc.exit_code)
        if isinstance(rv, int):
            sys.exit(rv)
        return rv


def stage_group(stage: str, help: str) -> click.Group:
    dist = f"biometrics-{stage}"

    @click.group(name=dist, cls=StageGroup, help=help)
    @click.version_option(_version(dist), prog_name=dist)
    def group() -> None:
        pass

    group.stage = stage  # type: ignore[attr-defined]
    return group


@dataclass
class StageRun:
    """What a command body gets: the parsed date, the staging area and its manifest."""

    stage: str
    command: str
    day: dt.date | None
    staging: Staging | None
    manifest: RunManifest
    started: float = 0.0

    def finish(self) -> RunManifest:
        """Stamp the duration so far (for stages that record their own run before exiting)."""
        self.manifest.duration_seconds = round(time.monotonic() - self.started, 3)
        return self.manifest

    def publish(self, outputs: dict[str, Path]) -> None:
        """Replace the staged outputs (``rel``: local folder). An earlier run's manifest of this
        command goes first: a failure between two outputs leaves old and new files side by side, and
        without a manifest the next stage refuses them instead of taking the mix for one run's."""
        self.staging.delete(manifest_path(self.stage, self.command))
        for rel, folder in outputs.items():
            self.staging.publish(folder, rel)


# SQLSTATEs that no retry mends and the settings must: a role that may not read or write what it
# must (42501), a password refused (28P01) or a role unknown (28000)
_CONFIGURATION_SQLSTATES = ("42501", "28P01", "28000")


# SQLSTATE classes of an operational error that the stage met while it ran, which no setting causes
# and a retry may mend: a transaction rolled back (40: a deadlock), a lock not granted in time (55:
# lock_timeout), an operator's or the server's intervention (57: statement_timeout, a shutdown).
# Any other operational error is a connection that cannot be made (exit 2).
_TRANSIENT_SQLSTATE_CLASSES = ("40", "55", "57")


def _sqlstate(orig: BaseException) -> str:
    """The error's SQLSTATE as psycopg2 (``pgcode``) or psycopg and ADBC (``sqlstate``) give it, or ''."""
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or ""


def _operational_exit_code(orig: BaseException) -> int:
    return EXIT_FAILED if _sqlstate(orig)[:2] in _TRANSIENT_SQLSTATE_CLASSES else EXIT_USAGE


def _database_error(orig: BaseException) -> tuple[str, int]:
    code = _sqlstate(orig)
    message = leave_out_details(str(orig), orig)
    return f"database error: {message}", EXIT_USAGE if code in _CONFIGURATION_SQLSTATES else EXIT_FAILED


def classify(exc: BaseException) -> tuple[str, int]:
    """Turn any exception into (message, exit code), as the stage's one-line error tells it (the
    caller redacts the message, as ``fail`` does)."""
    if isinstance(exc, EtlError):
        return str(exc), exc.exit_code
    try:  # database driver errors: connection problems are configuration errors
        from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
    except ImportError:  # pragma: no cover
        DBAPIError = OperationalError = SQLAlchemyError = ()  # type: ignore[assignment]
    if isinstance(exc, OperationalError):
        return f"database error: {exc.orig}", _operational_exit_code(exc.orig)
    if isinstance(exc, DBAPIError):
        return _database_error(exc.orig)
    if _is_driver_error(exc):  # raised by the driver itself, as by a COPY on its raw cursor or ADBC's
        message, code = _database_error(exc)
        # an operational error as SQLAlchemy's wrapper of it gives it above ("too many clients" was
        # exit 2 through SQLAlchemy's connection and exit 1 through ADBC's)
        return message, _operational_exit_code(exc) if _is_operational(exc) else code
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {exc}", EXIT_FAILED
    if isinstance(exc, MemoryError):
        return "out of memory: lower BIOMETRICS_BATCH_SIZE or BIOMETRICS_MEMORY_LIMIT", EXIT_FAILED
    return f"{type(exc).__name__}: {exc}", EXIT_FAILED


_DRIVERS = ("psycopg2", "psycopg", "adbc_driver_manager")  # whose errors may reach us unwrapped


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _DRIVERS and isinstance(exc, Exception)


def _is_operational(exc: BaseException) -> bool:
    """A DB-API ``OperationalError`` of any of the drivers (each defines its own class)."""
    return any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__)


def stage_command(group: click.Group, name: str, help: str, *, dated: bool = True, staged: bool = True,
                  date_required: bool = True) -> Callable:
    """Decorate ``fn(run: StageRun, **options) -> RunManifest`` as a stage subcommand."""
    stage = group.stage  # type: ignore[attr-defined]

    def decorator(fn: Callable[..., RunManifest]) -> click.Command:
        @functools.wraps(fn)
        def command(date: str | None = None, staging_path: str | None = None, log_level: str | None = None,
                    **options) -> None:
            prog = f"biometrics-{stage}"
            # what a stage writes (staged readings, dead letters, backups, a SQLite warehouse) is
            # health data: readable by its owner only, whatever the caller's umask
            os.umask(0o077)
            try:
                logs.configure(settings.log_level(log_level))
                settings.check_all()
            except EtlError as exc:
                fail(prog, str(exc), exc.exit_code)
            started = time.monotonic()
            manifest = RunManifest(stage=stage, command=name, date=None, version=_version(prog))
            staging = None
            try:
                day = parse_day(date) if date is not None else None
                manifest.date = day.isoformat() if day else None
                staging = Staging(staging_path) if staging_path is not None else None  # '' is an error, not 'none'
                run = StageRun(stage, name, day, staging, manifest, started)
                log.info("%s %s: date=%s staging=%s", prog, name, manifest.date, staging.uri() if staging else "-")
                manifest = fn(run, **options) or manifest
            except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise
                message, code = classify(exc)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("traceback", exc_info=exc)
                manifest.status = "failed"
                manifest.details.setdefault("error", one_line(redact(message)))
                if code == EXIT_FAILED and manifest.details.get("checks"):
                    _emit(manifest, started, staging)  # validate: the results are the point
                fail(prog, message, code)
            _emit(manifest, started, staging)

        params = []
        if dated:
            params.append(click.Option(["--date"], required=date_required, metavar="YYYY-MM-DD",
                                       help="The UTC data day to process."))
        if staged:
            params.append(click.Option(["--staging-path"], required=True, metavar="URL",
                                       help="Staging location: file:///abs/path, a local path or s3://bucket/prefix."))
        params.append(click.Option(["--log-level"], default=None, metavar="LEVEL",
                                   type=click.Choice(settings.LOG_LEVELS, case_sensitive=False),
                                   help="Log level (default: $BIOMETRICS_LOG_LEVEL or INFO)."))
        cmd = click.command(name=name, help=help)(command)
        cmd.params = params + cmd.params
        group.add_command(cmd)
        return cmd

    return decorator


def _emit(manifest: RunManifest, started: float, staging: Staging | None) -> None:
    manifest.duration_seconds = round(time.monotonic() - started, 3)
    if staging is not None and manifest.date is not None:
        try:
            staging.write_json(manifest_path(manifest.stage, manifest.command), manifest.to_dict())
        except EtlError as exc:
            log.warning("could not store the manifest in staging: %s", exc)
    click.echo(manifest.to_json())
