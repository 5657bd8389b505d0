"""Backups on S3 staging (a real S3 endpoint): create, restore from it, purge old backups there."""

from __future__ import annotations

import json
import re

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
    dump = json.loads(s3_env.client().get_object(Bucket="biometrics-backups",
                                                 Key=f"pipeline/backups/{day}/manifest.json")["Body"].read())["dump"]
    assert re.fullmatch(r"warehouse-[0-9a-f]{12}\.sqlite3", dump)
    assert _keys(s3_env, "biometrics-backups", f"pipeline/backups/{day}/") == [
        f"pipeline/backups/{day}/manifest.json", f"pipeline/backups/{day}/{dump}"]
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
    manifest["files"][dump]["sha256"] = "0" * 64
    client.put_object(Bucket="biometrics-backups", Key="pipeline/tampered/manifest.json",
                      Body=json.dumps(manifest).encode())
    client.copy_object(Bucket="biometrics-backups", Key=f"pipeline/tampered/{dump}",
                       CopySource={"Bucket": "biometrics-backups", "Key": f"pipeline/backups/{day}/{dump}"})
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
        f"pipeline/backups/{day}/manifest.json", f"pipeline/backups/{day}/{dump}"]
    assert _keys(s3_env, "biometrics-backups", "pipeline/2025-01-01") == []


def test_a_new_backup_whose_upload_breaks_leaves_the_previous_one_restorable(sqlite_warehouse, s3_env, tmp_path,
                                                                           tools, monkeypatch):
    """The S3 publish deleted the day's backup first and then uploaded the new one, ignoring a failed
    part upload: exit 0, a manifest without its dump, and the good backup gone."""
    from biometrics_testkit.servers import CuttingProxy
    s3_env.create_bucket("biometrics-rebackups")
    root, day, wh = "s3://biometrics-rebackups/pipeline", tools.DAY.isoformat(), sqlite_warehouse
    before = tools.content(wh.url)  # what the backup holds: its own run is recorded after the dump
    assert wh.backup("create", "--date", day, "--staging-path", root).exit_code == 0
    first = _keys(s3_env, "biometrics-rebackups", "pipeline/backups/")
    import sqlalchemy as sa
    engine = sa.create_engine(wh.url)
    with engine.begin() as conn:  # a dump uploaded in parts
        conn.execute(sa.text("CREATE TABLE padding (data BLOB)"))
        conn.execute(sa.text("INSERT INTO padding VALUES (randomblob(12000000))"))
    engine.dispose()
    proxy = CuttingProxy(s3_env.url, budget=6 << 20)
    try:
        broken = wh.backup("create", "--date", day, "--staging-path", root, env={"AWS_ENDPOINT_URL": proxy.url})
    finally:
        proxy.close()
    assert broken.exit_code == 2 and "cannot publish" in broken.error_line, broken.stderr
    assert _keys(s3_env, "biometrics-rebackups", "pipeline/backups/")[0] == first[0]  # the manifest, as it was
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = wh.backup("restore", "--date", day, "--staging-path", root, env={"BIOMETRICS_RESTORE_TARGET_URL": target})
    assert restored.exit_code == 0, restored.stderr
    assert tools.content(target) == before
    # a backup that goes up whole replaces the previous one: its dump and manifest, nothing else
    again = wh.backup("create", "--date", day, "--staging-path", root)
    assert again.exit_code == 0, again.stderr
    keys = _keys(s3_env, "biometrics-rebackups", "pipeline/backups/")
    assert len(keys) == 2 and not set(keys) & set(first[1:]), keys
