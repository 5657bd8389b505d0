"""Errors that map to the stage exit codes.

Exit codes are part of the CLI contract: 0 success, 1 the stage ran and failed
(for validate: a data-quality check failed), 2 usage or configuration error.
Airflow retries help with neither 1 nor 2 on their own, but the distinction tells
an operator whether to fix the data or the deployment.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class EtlError(Exception):
    """Base class: an error with a one-line, secret-free message and an exit code."""

    exit_code = EXIT_FAILED


class ConfigError(EtlError):
    """A missing or invalid setting, or a connection that cannot be made."""

    exit_code = EXIT_USAGE


class InputError(EtlError):
    """Missing or malformed input: staging data, a vendor file, a backup."""

    exit_code = EXIT_USAGE


class StageFailed(EtlError):
    """The stage ran and failed."""

    exit_code = EXIT_FAILED


class DataQualityError(StageFailed):
    """One or more data-quality checks failed."""
