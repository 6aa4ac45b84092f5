"""The model store's files on object storage (``s3://bucket/prefix``), for workers on several machines.

Same layout as a local store (``versions/<version>/``, ``current.json``), through pyarrow's filesystems
as the lake uses them: the endpoint, region and keys come from the standard AWS environment
(``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or
``AWS_PROFILE``), never from the URI (:func:`triage.lake.io.check_uri` refuses one that carries them).

- **A version appears whole.** Its files are uploaded first and ``model.json`` last; a version without
  ``model.json`` (an upload cut off) is invisible to ``list``, ``current`` and loading.
- **The pointer moves atomically.** ``current.json`` is replaced by one PUT: object stores replace a key
  atomically, so a reader sees the old pointer or the new one, never a mix. The pointer carries the
  stack of earlier current versions, so a rollback after a crash returns to the right one.
- **Loading downloads a version once** into a local cache (``$XDG_CACHE_HOME/triage/models/...``, by
  default ``~/.cache``), keyed by version (a complete version never changes), and loads it from there with
  the same safetensors/JSON-only loader and its checks as a local store.

This assumes a strongly consistent store (S3 since 2020, MinIO, Ceph RGW): a version's files are
listed in full once its ``model.json`` can be read, and a pointer read after a PUT is the new one. Two
processes on different machines moving the pointer at the same instant are not serialised (pyarrow
offers no conditional write): each pointer is whole, and the later PUT wins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs

from triage.lake.io import check_uri

T = TypeVar("T")

#: How long a read of an object replaced while it was read is tried again (see :meth:`RemoteFiles.read`),
#: and the first pause between tries (doubled each time, up to a quarter of a second).
READ_RETRY_SECONDS = 2.0
FIRST_PAUSE_SECONDS = 0.02
#: Bytes per read while copying a version's files (a GET each when downloading: the encoder's weights,
#: ~90 MB for MiniLM, in a few requests rather than ninety).
COPY_CHUNK_BYTES = 16 * 1024 * 1024
#: Folder under ``$XDG_CACHE_HOME`` (default ``~/.cache``) holding downloaded versions, per store.
CACHE_SUBDIR = Path("triage") / "models"


def is_store_uri(root: str | Path) -> bool:
    """Whether ``root`` names an object store (``s3://...``) rather than a local folder."""
    return isinstance(root, str) and "://" in root


def default_cache(uri: str) -> Path:
    """This machine's cache folder of the store at ``uri``: ``<cache home>/triage/models/<scheme>/<bucket>/<prefix>``."""
    scheme, _, rest = uri.partition("://")
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    parts = [p for p in rest.split("/") if p and p not in (".", "..")]
    return Path(home).expanduser() / CACHE_SUBDIR / scheme / Path(*parts)


def local_root(root: str | Path) -> Path:
    """The local folder of the store at ``root``: the store itself, or for one on object storage this
    machine's cache of it (downloaded versions; where encoders are built and embeddings cached)."""
    return default_cache(str(root).rstrip("/")) if is_store_uri(root) else Path(root)


class RemoteFiles:
    """The files of a store at ``uri`` on a pyarrow filesystem, and this machine's cache of them."""

    def __init__(self, uri: str, cache: Path | None = None) -> None:
        check_uri(uri)
        self.uri = uri.rstrip("/")
        self.fs, root = pafs.FileSystem.from_uri(self.uri)
        self.root = root.rstrip("/")
        self.cache = Path(cache) if cache is not None else default_cache(self.uri)

    def url(self, *parts: str) -> str:
        """``uri/part/...``: how people see a file of the store (no endpoint, no keys)."""
        return "/".join([self.uri, *parts])

    def _key(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self._key(*parts)).type == pafs.FileType.File

    def read(self, *parts: str, parse: Callable[[bytes], T]) -> T | None:
        """The object's content as ``parse`` reads it, or None when there is none.

        pyarrow reads an object with a HEAD (its size) then a ranged GET: an object replaced in between
        reads as a prefix of the new content (or a short read), which ``parse`` refuses (a JSON document
        cut short does not parse). Such a read is tried again for up to :data:`READ_RETRY_SECONDS` (an
        object replaced over and over, as by promotions back to back, can tear several reads in a row);
        then the last error is raised.
        """
        deadline, pause = time.monotonic() + READ_RETRY_SECONDS, FIRST_PAUSE_SECONDS
        while True:
            try:
                with self.fs.open_input_stream(self._key(*parts)) as stream:
                    data = bytes(stream.read())
                return parse(data)
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.25)

    def write(self, data: bytes, *parts: str) -> None:
        """Replace the object with ``data`` (one PUT: readers see the old or the new content)."""
        with self.fs.open_output_stream(self._key(*parts)) as stream:
            stream.write(data)

    def folders(self, *parts: str) -> list[str]:
        """Names of the sub-folders (key prefixes) directly under ``parts``."""
        selector = pafs.FileSelector(self._key(*parts), allow_not_found=True)
        return sorted(
            i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory
        )

    def upload(self, folder: Path, prefix: tuple[str, ...], *, last: str) -> None:
        """Every file of ``folder`` under ``prefix``, the file named ``last`` (relative) after all others."""
        local = pafs.LocalFileSystem()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        final = folder / last
        for path in [p for p in files if p != final] + [final]:
            target = self._key(*prefix, *path.relative_to(folder).parts)
            pafs.copy_files(
                str(path),
                target,
                source_filesystem=local,
                destination_filesystem=self.fs,
                chunk_size=COPY_CHUNK_BYTES,
            )

    def download(self, prefix: tuple[str, ...], into: Path) -> Path:
        """The files under ``prefix`` into the new folder ``into`` (written under a temporary name in its
        parent and renamed when complete; when another process got there first, its copy is kept)."""
        into.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{into.name}.", dir=into.parent))
        try:
            pafs.copy_files(
                self._key(*prefix),
                str(staging),
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
                chunk_size=COPY_CHUNK_BYTES,
            )
            staging.chmod(0o755)
            try:
                os.rename(staging, into)
            except OSError:
                if not into.is_dir():
                    raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                _remove_tree(staging)
        return into


def _remove_tree(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
