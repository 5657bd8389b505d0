"""Logging to stderr (stdout is reserved for the manifest), with secrets masked."""

from __future__ import annotations

import logging
import sys

from .redact import leave_out_details, redact


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.exc_info:  # a traceback quotes the error's detail whole, over all its lines
            text = leave_out_details(text, record.exc_info[1])
        return redact(text)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # (Alembic 1.20, as installed here, logs each autogenerate plugin it sets up, at INFO, on every migration)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic.runtime.migration",
                  "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
