"""Backups on S3 staging (a real S3 endpoint): create, restore from it, purge old backups there."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.s3


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    """Object keys below a prefix, without directory markers (pyarrow leaves one for a parent it empties)."""
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []) if not o["Key"].endswith("/"))


def test_s3_round_trip_and_purge(sqlite_warehouse, s3_env, tmp_path, tools):
    s3_env.create_bucket("biometrics-backups")
    root = "s3://biometrics-backups/pipeline"
    day = tools.DAY.isoformat()
    wh = sqlite_warehouse
    before = tools.content(wh.url)

    created = wh.backup("create", "--date", day, "--staging-path", root)
    assert created.exit_code == 0, created.stderr
    assert created.manifest["outputs"] == [f"{root}/backups/{day}"]
    assert _keys(s3_env, "biometrics-backups", f"pipeline/backups/{day}/") == [
        f"pipeline/backups/{day}/manifest.json", f"pipeline/backups/{day}/warehouse.sqlite3"]
    assert s3_env.secret_key not in created.stdout + created.stderr

    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = wh.backup("restore", "--date", day, "--staging-path", root,
                         env={"BIOMETRICS_RESTORE_TARGET_URL": target})
    assert restored.exit_code == 0, restored.stderr
    assert restored.manifest["details"]["from"] == f"{root}/backups/{day}"
    assert tools.content(target) == before

    # a tampered manifest on S3 is caught like a local one
    client = s3_env.client()
    key = f"pipeline/backups/{day}/manifest.json"
    manifest = json.loads(client.get_object(Bucket="biometrics-backups", Key=key)["Body"].read())
    manifest["files"]["warehouse.sqlite3"]["sha256"] = "0" * 64
    client.put_object(Bucket="biometrics-backups", Key="pipeline/tampered/manifest.json",
                      Body=json.dumps(manifest).encode())
    client.copy_object(Bucket="biometrics-backups", Key="pipeline/tampered/warehouse.sqlite3",
                       CopySource={"Bucket": "biometrics-backups", "Key": f"pipeline/backups/{day}/warehouse.sqlite3"})
    tampered = wh.backup("restore", "--from", f"{root}/tampered", "--target-url",
                         f"sqlite:///{tmp_path / 'other.db'}")
    assert tampered.exit_code == 1 and "SHA-256" in tampered.error_line
    assert not (tmp_path / "other.db").exists()

    # an old backup and an old day's folder go; this day's backup stays
    for old in ("pipeline/backups/2025-01-01/manifest.json", "pipeline/2025-01-01/extract/readings/part.parquet"):
        client.put_object(Bucket="biometrics-backups", Key=old, Body=b"old")
    purged = wh.backup("purge", "--date", day, "--staging-path", root)
    assert purged.exit_code == 0, purged.stderr
    assert sorted(purged.manifest["details"]["deleted_staging"]) == [f"{root}/2025-01-01",
                                                                   f"{root}/backups/2025-01-01"]
    assert _keys(s3_env, "biometrics-backups", "pipeline/backups/") == [
        f"pipeline/backups/{day}/manifest.json", f"pipeline/backups/{day}/warehouse.sqlite3"]
    assert _keys(s3_env, "biometrics-backups", "pipeline/2025-01-01") == []
