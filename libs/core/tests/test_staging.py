"""Staging over a local folder and over a real S3 endpoint, through one interface."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biometrics_core.errors import ConfigError, InputError
from biometrics_core.staging import Staging


@pytest.fixture(params=["local", "file-url", "s3"])
def staging(request, tmp_path):
    if request.param == "local":
        return Staging(str(tmp_path / "stage"))
    if request.param == "file-url":
        return Staging(f"file://{tmp_path / 'stage'}")
    s3 = request.getfixturevalue("s3_env")
    s3.create_bucket("staging-tests")
    return Staging(f"s3://staging-tests/run-{tmp_path.name}/prefix")


def test_write_read_list_delete(staging):
    staging.write_json("manifests/x.json", {"a": 1})
    staging.write_bytes("inbox/acme/2026-01-05/r.csv", b"data")
    assert staging.read_json("manifests/x.json") == {"a": 1}
    assert staging.list_files("inbox", (".csv",)) == ["inbox/acme/2026-01-05/r.csv"]
    assert staging.list_dirs("inbox") == ["acme"]
    assert staging.exists("inbox/acme") and not staging.exists("nothing")
    staging.delete("inbox")
    assert not staging.exists("inbox/acme/2026-01-05/r.csv")
    assert staging.modified_at("manifests/x.json").tzinfo is not None


def test_missing_input_is_an_input_error(staging):
    with pytest.raises(InputError, match="missing staging input"):
        staging.read_bytes("nope.json")
    with pytest.raises(InputError, match="missing staging input"):
        staging.parquet_dataset("transform/readings")


def test_publish_replaces_the_whole_output(staging, tmp_path):
    table = pa.table({"x": [1, 2, 3]})
    for round_no in range(2):
        with staging.workdir() as work:
            out = work / "readings"
            out.mkdir()
            pq.write_table(table, out / f"part-{round_no}.parquet")
            staging.publish(out, "extract/readings")
        assert staging.list_files("extract/readings") == [f"extract/readings/part-{round_no}.parquet"]
    assert staging.parquet_dataset("extract/readings").to_table().num_rows == 3
    assert not staging.exists(".work") or staging.list_files(".work") == []


def test_uri_round_trip(staging):
    assert Staging(staging.uri("a/b")).path() == staging.path("a/b")


@pytest.mark.parametrize("name", ["run#1", "q?x", "with space", "100%", "with%20code"])
def test_a_local_folder_named_with_url_characters(tmp_path, name):
    """A plain path is taken as it is; its URI is percent-encoded and reads back as the same folder."""
    root = Staging(str(tmp_path / name / "staging"))
    assert root.path() == str(tmp_path / name / "staging")
    inbox = root.child("inbox")
    assert inbox.path() == str(tmp_path / name / "staging" / "inbox")
    assert Staging(inbox.uri()).path() == inbox.path() and Staging(root.uri("x")).path() == root.path("x")


def test_a_file_url_is_percent_decoded(tmp_path):
    assert Staging(f"file://{tmp_path}/with%20space/st").path() == f"{tmp_path}/with space/st"
    for url in (f"file://{tmp_path}/run#1", f"file://{tmp_path}/q?x"):
        with pytest.raises(ConfigError, match="percent-encode"):  # urlparse would cut the path there
            Staging(url)
    for url in ("s3://bucket/team#7/day", "s3://bucket/q?x=1/y"):
        with pytest.raises(ConfigError, match="taken literally, not percent-decoded"):
            Staging(url)
    assert Staging("s3://bucket/with%20code/day").path() == "bucket/with%20code/day"  # as the AWS tools take it
    with pytest.raises(ConfigError, match="invalid BIOMETRICS_INBOX_PATH"):
        Staging(f"file://{tmp_path}/in#box", "BIOMETRICS_INBOX_PATH")


@pytest.mark.parametrize("url", ["ftp://host/x", "s3://", "file://remote-host/x", "",
                                 # Arrow wrote '.' and '..' normalised and listed them literally, and
                                 # refused '//' (exit 1); urlparse dropped a tab
                                 "s3://b/dd/../2026-01-05", "s3://b/./x", "s3://b/dbl//2026-01-05",
                                 "s3://b/tab\tx/2026-01-05", "file:///tmp/tab\tx"])
def test_bad_staging_urls(url):
    with pytest.raises(ConfigError):
        Staging(url)


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1:9000", "http://127.0.0.1:9000/some/path"])
def test_an_endpoint_arrow_cannot_use_is_a_configuration_error(monkeypatch, endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL=.* must be http"):
        Staging("s3://bucket/prefix")


@pytest.mark.s3
def test_an_s3_object_named_like_a_folder_is_refused_not_skipped(s3_env, tmp_path):
    """`aws s3 cp readings.csv s3://inbox/acme/2026-01-05` (no trailing slash) makes an object where the
    day's folder should be: listed as a prefix it held nothing, and the day loaded without it."""
    s3_env.create_bucket("inbox-tests")
    inbox = Staging(f"s3://inbox-tests/{tmp_path.name}")
    inbox.write_bytes("acme/2026-01-05", b"reading_id,user_id\n")
    with pytest.raises(InputError, match="acme/2026-01-05 is a file where a folder is expected"):
        inbox.list_files("acme/2026-01-05")
    s3_env.client().put_object(Bucket="inbox-tests", Key=f"{tmp_path.name}/other/2026-01-05//double.csv",
                               Body=b"x")  # an empty part in a key, which Arrow cannot even name
    with pytest.raises(InputError, match=r"other/2026-01-05//double.csv has an empty part \('//'\) in its key"):
        inbox.list_files("other/2026-01-05")


def test_two_runs_publishing_one_output_at_once_leave_one_of_them_whole(tmp_path):
    """Each run's output ends up whole or replaced, never inside the other's (a move into the folder
    the other run had just published nested it there: both exit 0, the next stage saw double)."""
    import threading
    staging = Staging(f"file://{tmp_path / 'stage'}")
    for _ in range(100):
        ready, errors = threading.Barrier(2), []

        def run(tag):
            with staging.workdir() as work:
                out = work / "readings"
                out.mkdir()
                (out / f"part-{tag}.parquet").write_text(tag)
                ready.wait()
                try:
                    staging.publish(out, "extract/readings")
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

        threads = [threading.Thread(target=run, args=(tag,)) for tag in "AB"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert staging.list_files("extract/readings") in (["extract/readings/part-A.parquet"],
                                                          ["extract/readings/part-B.parquet"])
    assert sorted(p.name for p in (tmp_path / "stage" / "extract").iterdir()) == ["readings"]


def test_a_killed_runs_work_directory_is_removed_a_day_later(tmp_path):
    import os
    import time
    staging = Staging(str(tmp_path / "stage"))
    work = tmp_path / "stage" / ".work"
    abandoned, recent = work / "run-abandoned", work / "run-recent"
    for folder in (abandoned, recent):
        (folder / "readings").mkdir(parents=True)
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(abandoned, (day_and_a_bit, day_and_a_bit))
    with staging.workdir() as path:
        assert path.parent == work
    assert not abandoned.exists() and recent.exists()  # a run that may still be going is left alone


def test_a_killed_s3_runs_scratch_directory_is_removed_a_day_later(tmp_path, monkeypatch):
    """With S3 staging a run's scratch (a copy of the staged readings) is in BIOMETRICS_WORK_DIR or
    the temp directory, which others share: one left by a killed run had stayed there for good."""
    import os
    import time
    monkeypatch.setenv("BIOMETRICS_WORK_DIR", str(tmp_path / "work"))
    abandoned, recent = tmp_path / "work" / "biometrics-run-abandoned", tmp_path / "work" / "biometrics-run-recent"
    someone_elses = tmp_path / "work" / "run-not-ours"
    for folder in (abandoned, recent, someone_elses):
        (folder / "readings").mkdir(parents=True)
    day_and_a_bit = time.time() - 25 * 3600
    for folder in (abandoned, someone_elses):
        os.utime(folder, (day_and_a_bit, day_and_a_bit))
    with Staging("s3://bucket/prefix").workdir() as path:
        assert path.parent == tmp_path / "work" and path.name.startswith("biometrics-run-")
    assert not abandoned.exists() and recent.exists() and someone_elses.exists()


def test_a_work_folder_whose_parent_another_run_removed_meanwhile(tmp_path, monkeypatch):
    """Another run's cleanup removes the shared, empty .work between this run's mkdir and mkdtemp."""
    import os
    import tempfile
    real_mkdtemp, calls = tempfile.mkdtemp, []

    def mkdtemp_after_a_cleanup(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.rmdir(kwargs["dir"])  # what the other run's `finally: base.rmdir()` does
        return real_mkdtemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_after_a_cleanup)
    with Staging(str(tmp_path / "stage")).workdir() as work:
        assert work.is_dir() and len(calls) == 2


@pytest.mark.s3
def test_an_upload_the_network_breaks_fails_the_publish_and_keeps_the_previous_output(s3_env, monkeypatch, tmp_path):
    """pyarrow's copy_files ignored a failed part upload and returned: a stage exited 0 with its
    files missing, and the previous output, deleted first, was gone."""
    import os

    from biometrics_testkit.servers import CuttingProxy
    s3_env.create_bucket("publish-tests")
    root = f"s3://publish-tests/run-{tmp_path.name}"
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "old-part.bin").write_bytes(b"old" * 1000)
    Staging(root).publish(previous, "backups/day")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "new-part.bin").write_bytes(os.urandom(12 << 20))  # a multipart upload
    (incoming / "manifest.json").write_text("{}")
    proxy = CuttingProxy(s3_env.url, budget=6 << 20)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        with pytest.raises(ConfigError, match="cannot publish .*backups/day"):
            Staging(root).publish(incoming, "backups/day", last=("manifest.json",))
    finally:
        proxy.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.url)
    staging = Staging(root)
    assert staging.list_files("backups/day") == ["backups/day/old-part.bin"]
    # once the network holds, the new output replaces the old one whole
    staging.publish(incoming, "backups/day", last=("manifest.json",))
    assert staging.list_files("backups/day") == ["backups/day/manifest.json", "backups/day/new-part.bin"]
    assert staging.read_bytes("backups/day/new-part.bin") == (incoming / "new-part.bin").read_bytes()


def test_runs_publishing_one_output_at_once_all_succeed(staging, tmp_path):
    """On S3 a run had failed (exit 2) when another deleted the manifest or the old output between
    its look and its delete."""
    from concurrent.futures import ThreadPoolExecutor
    staging.write_json("manifests/t.json", {"run": 0})

    def publish(number: int) -> None:
        import uuid
        out = tmp_path / f"out-{number}-{uuid.uuid4().hex}"
        out.mkdir()
        pq.write_table(pa.table({"x": [1, 2, 3]}), out / "part-0.parquet")
        staging.delete("manifests/t.json")
        staging.publish(out, "transform/readings")
        staging.write_json("manifests/t.json", {"run": number})

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(publish, range(4)))
    assert staging.list_files("transform/readings") == ["transform/readings/part-0.parquet"]
    assert staging.parquet_dataset("transform/readings").to_table().num_rows == 3
