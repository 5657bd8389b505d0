"""One interface over the staging area, local (`file://`, plain path) or S3 (`s3://bucket/prefix`).

Stages never write half an output: they build it in a work directory and ``publish`` it, which
replaces the previous output of that stage (renames on local disk; on S3, which has none, every
file is uploaded over its key and checked in the bucket before the previous output's other objects
are deleted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlparse

import pyarrow.fs as pafs

from . import settings
from .errors import ConfigError, InputError
from .redact import one_line, redact

if TYPE_CHECKING:
    import pyarrow.dataset as ds

log = logging.getLogger(__name__)


def _s3_filesystem() -> pafs.S3FileSystem:
    # pyarrow does not read AWS_ENDPOINT_URL by itself: pass it explicitly.
    kwargs: dict = {"region": settings.get("AWS_DEFAULT_REGION")}
    endpoint = settings.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.netloc and (parsed.scheme not in ("http", "https") or parsed.path not in ("", "/")):
            # Arrow's own error (exit 1, retried for an hour), or a path it would ignore without a word
            raise ConfigError(f"AWS_ENDPOINT_URL={redact(endpoint)!r} must be http(s)://host[:port], with no path")
        if parsed.scheme and parsed.netloc:
            kwargs["endpoint_override"] = parsed.netloc
            kwargs["scheme"] = parsed.scheme
        else:
            kwargs["endpoint_override"] = endpoint
    key, secret = settings.get("AWS_ACCESS_KEY_ID"), settings.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs["access_key"], kwargs["secret_key"] = key, secret
        token = settings.get("AWS_SESSION_TOKEN")
        if token:
            kwargs["session_token"] = token
    return pafs.S3FileSystem(**kwargs)


@contextlib.contextmanager
def scratch_dir(base: Path | None = None, prefix: str = "biometrics-") -> Iterator[Path]:
    """A private local directory under ``base`` (default ``BIOMETRICS_WORK_DIR`` or the temp dir)."""
    base = Path(base or settings.get("BIOMETRICS_WORK_DIR") or tempfile.gettempdir())
    _remove_abandoned(base, prefix)
    for attempt in range(3):
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix=f"{prefix}{uuid.uuid4().hex[:8]}-", dir=base))
            break
        except FileNotFoundError:  # another run removed the (empty) base between the two: make it again
            if attempt == 2:
                raise ConfigError(f"cannot create a work directory under {base}: it keeps disappearing") from None
        except OSError as exc:
            raise ConfigError(f"cannot create a work directory under {base}: {exc.strerror}") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_COPY_CHUNK = 8 << 20  # bytes per write of an upload or download: S3's multipart parts are 5-10 MB

ABANDONED_AFTER = dt.timedelta(days=1)  # far beyond a task's 3-hour limit: no live run is that old


def _remove_abandoned(base: Path, prefix: str) -> None:
    """Work directories of runs that were killed (SIGKILL, a lost container) hold a partial output
    each, health data (staged readings, a downloaded dump); nothing else would ever remove them."""
    cutoff = (dt.datetime.now(dt.timezone.utc) - ABANDONED_AFTER).timestamp()
    with contextlib.suppress(OSError):
        for folder in base.iterdir():
            with contextlib.suppress(OSError):
                if folder.name.startswith(prefix) and folder.is_dir() and not folder.is_symlink() \
                        and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)


class Staging:
    """A staging location: ``rel`` paths below it use forward slashes."""

    def __init__(self, url: str, what: str = "staging path"):
        """``what`` names the setting in messages (``--staging-path``, ``BIOMETRICS_INBOX_PATH``)."""
        if not url:
            raise ConfigError(f"the {what} is empty")
        self.url = url.rstrip("/") if url != "/" else url
        parsed = urlparse(url)
        if parsed.scheme in ("s3", "file") and any(ord(c) < 0x20 or ord(c) == 0x7f for c in url):
            # urlparse drops tabs and newlines: another prefix or folder than the one written
            raise ConfigError(f"invalid {what} {url!r}: it holds a control character (a tab, a newline)")
        if parsed.scheme in ("s3", "file") and ("?" in url or "#" in url):
            # urlparse would cut the path there, and another run's prefix or folder would be used
            raise ConfigError(f"invalid {what} {url!r}: a URL's path cannot hold a raw '?' or '#'; " + (
                "percent-encode them (%3F, %23) or give a plain path" if parsed.scheme == "file" else
                "an S3 prefix is taken literally, not percent-decoded, so choose one without them"))
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ConfigError(f"invalid {what} {url!r}: expected s3://bucket/prefix")
            prefix = parsed.path.strip("/")
            if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
                # Arrow normalises '.' and '..' when it writes an object and not when it lists
                # (another day's prefix was written without the check that guards it), and refuses '//'
                raise ConfigError(f"invalid {what} {url!r}: an S3 prefix cannot have an empty, '.' or '..' part")
            self.fs: pafs.FileSystem = _s3_filesystem()
            self.root = f"{parsed.netloc}/{prefix}".rstrip("/")
            self.is_local = False
        elif parsed.scheme in ("file", ""):
            path = unquote(parsed.path) if parsed.scheme == "file" else url  # a plain path is taken as it is
            if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
                raise ConfigError(f"invalid {what} {url!r}: file URLs must be file:///absolute/path")
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(path).expanduser().absolute())
            self.is_local = True
        else:
            raise ConfigError(f"unsupported {what} {url!r}: use file:///path, a local path or s3://bucket/prefix")

    @property
    def container(self) -> str:
        """What holds this location, in messages: a folder, or a bucket on S3."""
        return "folder" if self.is_local else "bucket"

    def container_exists(self) -> bool:
        """Whether the folder (local) or the bucket (S3) is there. An S3 prefix exists only while
        it holds objects, so an inbox nobody has delivered to yet is only its bucket."""
        if self.is_local:
            return self.exists("")
        try:
            return self.fs.get_file_info(self.root.split("/", 1)[0]).type != pafs.FileType.NotFound
        except OSError as exc:
            raise InputError(f"cannot read {self.uri()}: {one_line(redact(str(exc)))}") from None

    def holds_nothing(self) -> bool:
        """Whether nothing at all is below this location (on S3: no object under its prefix)."""
        try:
            return not self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False, allow_not_found=True))
        except OSError as exc:
            raise InputError(f"cannot list staging {self.uri()}: {one_line(redact(str(exc)))}") from None

    # -- paths -------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        rel = rel.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def uri(self, rel: str = "") -> str:
        rel = rel.strip("/")
        if self.is_local:  # percent-encoded, so that the URI names the same folder when read back
            return "file://" + quote(self.path(rel))
        return "s3://" + self.path(rel)

    def child(self, rel: str) -> "Staging":
        """The staging location ``rel`` below this one (same filesystem; no path is parsed again)."""
        below = object.__new__(Staging)
        below.url, below.fs, below.is_local, below.root = self.uri(rel), self.fs, self.is_local, self.path(rel)
        return below

    # -- queries -----------------------------------------------------------------------------
    def _info(self, rel: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(rel))
        except OSError as exc:
            raise InputError(f"cannot read staging {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    def exists(self, rel: str) -> bool:
        return self._info(rel).type != pafs.FileType.NotFound

    def modified_at(self, rel: str) -> dt.datetime:
        info = self._info(rel)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"missing staging input {self.uri(rel)}")
        if self.is_local:  # Arrow's local mtime is in nanoseconds and wraps after 2262 (to 1715)
            seconds = os.stat(self.path(rel)).st_mtime
            try:
                return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
            except (OverflowError, ValueError, OSError):
                raise InputError(f"{self.uri(rel)} has a modification time beyond the year 9999") from None
        mtime = info.mtime or dt.datetime.now(dt.timezone.utc)
        return (mtime if mtime.tzinfo else mtime.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)

    def list_files(self, rel: str = "", suffixes: tuple[str, ...] = ()) -> list[str]:
        """Files below ``rel`` (recursive), as paths relative to the staging root, sorted."""
        base = self.path(rel)
        if rel.strip("/") and self._info(rel).type == pafs.FileType.File:
            # an S3 object named like the folder (`aws s3 cp f.csv s3://inbox/acme/2026-01-05`):
            # listed as a prefix it holds nothing, and the delivery was dropped without a word
            raise InputError(f"staging {self.uri(rel)} is a file where a folder is expected")
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise InputError(f"cannot list staging {self.uri(rel)}: {one_line(redact(str(exc)))}") from None
        prefix = self.root + "/" if self.root != "/" else "/"
        found = []
        for info in infos:
            name = info.path[len(prefix):] if info.path.startswith(prefix) else info.path
            if any(part.startswith(".") for part in name.split("/")):
                continue  # work directories and hidden files are never inputs
            if info.type == pafs.FileType.File and "" in name.split("/"):  # S3 keeps 'a//b'; Arrow cannot read it
                raise InputError(f"staging {self.uri(name)} has an empty part ('//') in its key: rename it")
            if info.type == pafs.FileType.Unknown:  # skipping it would drop a delivery without a word
                raise InputError(f"staging {self.uri(name)} is not a regular file (a FIFO, socket or device)")
            if info.type == pafs.FileType.File and (not suffixes or name.endswith(suffixes)):
                found.append(name)
        if self.is_local:
            self._refuse_broken_links(base)
        return sorted(found)

    def _refuse_broken_links(self, base: str) -> None:
        """Arrow's listing leaves out a symbolic link whose target is gone: a vendor file delivered
        as a link to a volume that is not mounted would be skipped, and the day loaded without it."""
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:  # os.walk lists a broken link with the files
                path = os.path.join(folder, name)
                if not name.startswith(".") and os.path.islink(path) and not os.path.exists(path):
                    raise InputError(f"staging {self.uri(os.path.relpath(path, self.root))} is a symbolic link "
                                     "to a file that does not exist")

    def list_dirs(self, rel: str = "") -> list[str]:
        """Names of the immediate subdirectories of ``rel``."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel), recursive=False, allow_not_found=True))
        except OSError as exc:
            raise InputError(f"cannot list staging {self.uri(rel)}: {one_line(redact(str(exc)))}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    # -- reading -----------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(rel)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise InputError(f"missing staging input {self.uri(rel)}") from None
        except OSError as exc:
            raise InputError(f"cannot read {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    def read_json(self, rel: str) -> dict:
        try:
            return json.loads(self.read_bytes(rel))
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.uri(rel)} is not valid JSON: {exc}") from None

    def open_input(self, rel: str):
        return self.fs.open_input_file(self.path(rel))

    def parquet_dataset(self, rel: str, schema=None) -> ds.Dataset:
        """The Parquet files of a staged output; InputError when there is none."""
        # imported here: only the load reads staged Parquet through Arrow, and pyarrow.dataset
        # adds 0.1-0.2 s to every other stage's start (transform, validate, backup)
        import pyarrow.dataset as ds
        if not self.exists(rel):
            raise InputError(f"missing staging input {self.uri(rel)}: did the previous stage run for this date?")
        files = [self.path(f) for f in self.list_files(rel, (".parquet",))]
        return ds.dataset(files, schema=schema, format="parquet", filesystem=self.fs)

    def download(self, rel: str, local_path: str | os.PathLike) -> None:
        # streams closed explicitly: pyarrow's copy_files ignores an error it meets closing a file
        try:
            with self.fs.open_input_stream(self.path(rel)) as source, open(local_path, "wb") as target:
                shutil.copyfileobj(source, target, _COPY_CHUNK)
        except FileNotFoundError:
            raise InputError(f"missing staging input {self.uri(rel)}") from None
        except OSError as exc:
            raise InputError(f"cannot download {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    # -- writing -----------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        try:
            if self.is_local:
                Path(self.path(rel)).parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_output_stream(self.path(rel)) as stream:
                stream.write(data)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    def write_json(self, rel: str, payload: dict) -> None:
        self.write_bytes(rel, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())

    def delete(self, rel: str) -> None:
        info = self._info(rel)
        try:
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(self.path(rel))
            elif info.type == pafs.FileType.File:
                self.fs.delete_file(self.path(rel))
        except FileNotFoundError:  # another run deleted it meanwhile
            pass
        except OSError as exc:
            raise ConfigError(f"cannot delete {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A private local scratch directory, removed afterwards.

        For local staging it lives inside the staging folder (hidden), so ``publish`` is a rename.
        """
        if not self.is_local:  # in the work or temp directory, which others share: a name of ours
            with scratch_dir(prefix="biometrics-run-") as path:
                yield path
            return
        base = Path(self.path(".work"))
        try:
            with scratch_dir(base, prefix="run-") as path:
                yield path
        finally:
            with contextlib.suppress(OSError):
                base.rmdir()  # only if empty: other runs may share it

    def publish(self, local_dir: str | os.PathLike, rel: str, last: tuple[str, ...] = ()) -> None:
        """Replace the staged directory ``rel`` with the contents of ``local_dir``. ``last``: names
        of files that commit the output (a backup's manifest), uploaded to S3 after the others."""
        local_dir = Path(local_dir)
        try:
            if self.is_local:
                self._publish_local(local_dir, Path(self.path(rel)))
            else:
                self._publish_s3(local_dir, self.path(rel), last)
        except OSError as exc:
            raise ConfigError(f"cannot publish {self.uri(rel)}: {one_line(redact(str(exc)))}") from None

    def _publish_s3(self, local_dir: Path, target: str, last: tuple[str, ...]) -> None:
        """Every file uploaded over its key (the ``last`` ones after the rest), each stream closed
        by hand and the object checked in the bucket at its size: pyarrow's copy_files had ignored a
        failed part upload and returned, so a stage exited 0 with files missing. Only then are the
        objects the previous output held and the new one lacks deleted (one a concurrent run
        deleted first is no error); until then the previous output's other files are all there."""
        previous = {info.path for info in self.fs.get_file_info(
            pafs.FileSelector(target, recursive=True, allow_not_found=True)) if info.type == pafs.FileType.File}
        files = sorted((path for path in local_dir.rglob("*") if path.is_file()),
                       key=lambda path: (path.name in last, path.as_posix()))
        uploaded = set()
        for path in files:
            key = f"{target}/{path.relative_to(local_dir).as_posix()}"
            with path.open("rb") as source, self.fs.open_output_stream(key) as out:
                shutil.copyfileobj(source, out, _COPY_CHUNK)
            size, stored = path.stat().st_size, self.fs.get_file_info(key)
            if stored.type != pafs.FileType.File or stored.size != size:
                raise OSError(f"{key} holds {stored.size} bytes after its upload of {size}")
            uploaded.add(key)
        for key in sorted(previous - uploaded):
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(key)

    @staticmethod
    def _publish_local(local_dir: Path, target: Path) -> None:
        """Renames only, so two runs publishing the same output at once leave one of them whole: the
        new folder is renamed onto the target, which fails while a target is there, so each
        attempt first moves the target (another run's, maybe) aside. (A move into an existing folder
        had nested one run's output inside the other's.)"""
        target.parent.mkdir(parents=True, exist_ok=True)
        incoming = target.with_name(f".new-{target.name}-{uuid.uuid4().hex[:8]}")
        shutil.move(str(local_dir), str(incoming))  # a rename: the work directory is on the same disk
        replaced = []
        try:
            for _ in range(100):
                try:
                    os.rename(incoming, target)  # replaces an empty folder, refuses a full one
                    return
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                aside = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
                with contextlib.suppress(FileNotFoundError):  # another run moved it first
                    os.rename(target, aside)
                    replaced.append(aside)
            raise OSError(f"other runs kept publishing {target.name} at the same time")
        finally:
            for folder in (*replaced, incoming):
                shutil.rmtree(folder, ignore_errors=True)
                if folder.exists():  # another user's files (a stage run as root by hand): health data left
                    log.warning("could not remove all of %s (files of another user?): remove it by hand", folder)
