"""pytest fixtures for real services: ``postgres_server`` and ``s3_endpoint`` (session-wide).

When a service cannot be started the fixture errors: it never skips, so CI cannot pass silently
without PostgreSQL or S3.
"""

from __future__ import annotations

import os

import pytest

from .servers import PostgresServer, S3Server


@pytest.fixture(scope="session")
def postgres_server():
    given = os.environ.get("BIOMETRICS_TEST_PG_URL")
    if given:
        yield PostgresServer(given)
        return
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    given = os.environ.get("BIOMETRICS_TEST_S3_URL")
    if given:
        yield S3Server(given)
        return
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The AWS variables of the test endpoint, set for this test."""
    for key, value in s3_endpoint.env().items():
        monkeypatch.setenv(key, value)
    return s3_endpoint
