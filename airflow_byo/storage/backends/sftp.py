"""
SFTP (``sftp://`` and ``ssh://``), over sshfs: outputs are uploaded to a temporary next to their
final name, then renamed over it (sshfs uses the atomic ``posix-rename@openssh.com`` extension).

* **Publishing**: every output of a file is uploaded to its temporary when prepared, *before* any
  is renamed, so only the renames (milliseconds) separate the first visible output from the last.
  A destination is never written through links: a directory the server reports as a link is
  refused. Output directories are made once per run.
* **Sweeping**: a killed worker's temporary stays next to its final name. A temporary is named
  after its writer: ``.byo-up-<machine>-<pid>-<random>-<name>``, where ``<machine>`` hashes the
  host name, the kernel's boot id and the PID namespace (two containers with one host name do not
  share process ids). One written by a process of *this* machine that is gone is removed at once,
  whatever its age: a dead process writes nothing more. Temporaries of other machines, of a live
  process id (maybe reused) or of older releases are removed once idle past the stale age
  (:func:`~airflow_byo.storage.backends.base.stale_age`). The destination's top directory is swept
  when a run starts publishing, each sub-directory the first time the run publishes there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoNotFoundError, ByoStorageError
from airflow_byo.filesystems import SFTP_PROTOCOLS
from airflow_byo.scratch import TEMP_MARKER
from airflow_byo.storage.backends.base import PendingOutput, mtime_of
from airflow_byo.storage.backends.remote import RemoteBackend
from airflow_byo.storage.local_files import open_staged_source

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from airflow_byo.results import StagedOutput

__all__ = ["SftpBackend", "SftpPending", "upload_temporary"]

log = logging.getLogger(__name__)

_UPLOAD_TEMP = f"{TEMP_MARKER}up-"
_WRITER = re.compile(rf"^{re.escape(_UPLOAD_TEMP)}(?P<machine>[0-9a-f]{{10}})-(?P<pid>\d+)-[0-9a-f]{{8}}-")
_MAX_NAME_BYTES = 255
#: Bytes per write of an upload: asyncssh pipelines each write as parallel requests, so this
#: bounds the upload's memory; 4 MiB streams as fast as sshfs's put_file (measured).
_WRITE_BYTES = 4 * 1024 * 1024


class SftpBackend(RemoteBackend):
    """A directory on an SFTP server (``sftp://[host]/path``: the host is the connection's)."""

    protocols = SFTP_PROTOCOLS

    def __init__(
        self, url: str, protocol: str, conn_id: str | None, *, role: str, follow_symlinks: bool
    ) -> None:
        super().__init__(url, protocol, conn_id, role=role, follow_symlinks=follow_symlinks)
        self._checked_dirs: set[str] = set()  # directories known to be no links
        self._made_dirs: set[str] = set()  # directories made (or found) by this run
        self._swept_dirs: set[str] = set()  # directories swept of stale temporaries

    def prepare_publish(self, source: str | StagedOutput, name: str) -> SftpPending:
        """Check the name and its directories, then upload to a temporary next to the final name."""
        if any(len(part.encode()) > _MAX_NAME_BYTES for part in name.split("/")):
            raise ByoStorageError(
                f"cannot write output {name!r} to {self.describe()}: a file name is longer than 255 "
                "bytes; choose a shorter output name"
            )
        return SftpPending(self, name, source)

    def check_no_links(self, name: str) -> None:
        """Refuse an output whose directories include a link (each directory checked once)."""
        directory = self.root_path
        for part in name.split("/")[:-1]:
            path = f"{directory}/{part}"
            if path not in self._checked_dirs:
                try:
                    listing = self.retry(functools.partial(self.fs.ls, directory, detail=True), "write")
                except ByoNotFoundError:
                    listing = []
                if any(e["name"].rstrip("/") == path and e.get("type") == "link" for e in listing):
                    raise ByoStorageError(
                        f"cannot write output {name!r}: {path!r} in {self.describe()} is a symlink; a "
                        "destination is never written through links: remove it or choose another output name"
                    )
                self._checked_dirs.add(path)
            directory = path

    def make_dir(self, directory: str) -> None:
        """Create an output directory (and its parents), once per directory."""
        if directory not in self._made_dirs:
            self.retry(lambda: self.fs.makedirs(directory, exist_ok=True), "write")
            self._made_dirs.add(directory)

    def sweep_stale_uploads(self, older_than: float) -> list[str]:
        """Sweep the top directory now; deeper ones as outputs are published there."""
        super().sweep_stale_uploads(older_than)
        self._swept_dirs = set()
        return self.sweep_directory(self.root_path)

    def sweep_directory(self, directory: str) -> list[str]:
        """Remove the stale upload temporaries of one directory (once per directory)."""
        if directory in self._swept_dirs:
            return []
        self._swept_dirs.add(directory)
        return self.swept(lambda: self._remove_stale_temporaries(directory))

    def _remove_stale_temporaries(self, directory: str) -> list[str]:
        """Delete the temporaries of dead processes of this machine, and any idle past the stale age."""
        cutoff = time.time() - self.stale_after
        removed = []
        try:
            entries = self.fs.ls(directory, detail=True)
        except FileNotFoundError:
            return []
        root = self.root_path.rstrip("/") + "/"
        for entry in entries:
            path = str(entry["name"])
            name = path.rsplit("/", 1)[-1]
            if not name.startswith(TEMP_MARKER) or entry.get("type") != "file":
                continue
            dead = _writer_is_dead(name)
            mtime = mtime_of(entry)
            if not dead and (mtime is None or mtime >= cutoff):
                continue
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)
                url = self.url_for(path[len(root) :] if path.startswith(root) else name)
                removed.append(url)
                log.warning(
                    "Removed a stale upload temporary %s of %s (%s: left by a killed worker)",
                    url,
                    self.describe(),
                    "its writer on this machine is gone" if dead else f"older than {self.stale_after:.0f} s",
                )
        return removed


class SftpPending(PendingOutput):
    """Uploaded to a temporary next to the final name when prepared; renamed over it on commit."""

    backend: SftpBackend

    def __init__(self, backend: SftpBackend, name: str, source: str | StagedOutput) -> None:
        super().__init__(backend, name)
        final = backend.path_for(name)
        self.tmp: str | None = upload_temporary(final)
        parent = final.rsplit("/", 1)[0]
        fs = backend.fs
        try:
            backend.check_no_links(name)
            backend.make_dir(parent)
            backend.sweep_directory(parent)  # what killed workers left there
            tmp = self.tmp
            backend.retry(lambda: _upload(fs, source, tmp, parent), "write")
        except BaseException:
            self.close()
            raise

    def _commit(self) -> None:
        fs, final = self.backend.fs, self.backend.path_for(self.name)
        self.backend.retry(lambda: fs.mv(self.tmp, final), "write")
        self.tmp = None

    def _retract(self) -> None:
        final = self.backend.path_for(self.name)
        self.backend.retry(lambda: self.backend.fs.rm_file(final), "delete")

    def close(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(Exception):
                self.backend.fs.rm_file(self.tmp)
            self.tmp = None


def _upload(fs: AbstractFileSystem, source: str | StagedOutput, remote_path: str, parent: str) -> None:
    """
    Stream ``source`` to ``remote_path``: one open, pipelined writes, one close. sshfs's
    ``put_file`` also runs ``makedirs`` of the parent (two requests per path component) and a
    ``stat`` for every file, which cost more than the data of a 1 MB file; the parent is made once
    per run instead (:meth:`SftpBackend.make_dir`), and again only if it vanished.
    """
    try:
        target = fs.open(remote_path, "wb")
    except FileNotFoundError:
        fs.makedirs(parent, exist_ok=True)
        target = fs.open(remote_path, "wb")
    with open(open_staged_source(source), "rb") as local, target:
        shutil.copyfileobj(local, target, _WRITE_BYTES)


def upload_temporary(final: str) -> str:
    """The temporary an upload to ``final`` writes first: in its directory, named after its writer."""
    head, _, tail = final.rpartition("/")
    prefix = f"{_UPLOAD_TEMP}{_machine()}-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    room = _MAX_NAME_BYTES - len(prefix)  # the final name is only there to be read by people
    tail = tail.encode()[:room].decode(errors="ignore")
    return f"{head}/{prefix}{tail}"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@functools.cache
def _machine() -> str:
    """This host, kernel boot and PID namespace, hashed: process ids mean the same within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    identity = "\n".join([socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), namespace])
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def _writer_is_dead(name: str) -> bool:
    """Whether ``name`` is a temporary written by a process of this machine that is gone."""
    match = _WRITER.match(name)
    if match is None or match["machine"] != _machine():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process; not a process id
        return False
    return False
