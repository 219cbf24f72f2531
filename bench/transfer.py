"""
B4: moving files between remote file systems -- S3 -> SFTP and SFTP -> S3, through
``ByoFlowOperator.execute`` with the ledger, against the loopback servers the tests use
(:class:`tests.servers.S3Server`, moto's S3 API server; :class:`tests.servers.SftpServer`,
OpenSSH ``sshd``).

The function is the identity (output = input bytes, streamed). Measured: the operator over a
fresh ``flow_id`` (every file is new), ``python_interpreter=sys.executable``, the default
``job_config`` and ``[byo] sandbox`` of this machine. Baseline: a raw sequential fsspec script
-- connect s3fs and sshfs, list the source, then ``get_file`` + ``put_file`` one file after the
other through a local temporary. Two sets of files: 500 x 1 MB (per-file latency) and 5 x 200 MB
(bandwidth). Target: the flow at least as fast as the script (<= 1.0x the time).

Inputs are random bytes, generated once under the workdir and uploaded before timing; each side
writes into its own destination directory, overwritten by every repetition, removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.timing import Row, medians

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.servers import S3Server, SftpServer


#: The identity, streamed: the function never holds a whole file.
IDENTITY = """
import shutil

def process(file, ctx):
    with file.open("rb") as source, ctx.output(file.name, "wb") as target:
        shutil.copyfileobj(source, target, 1024 * 1024)
"""

_S3_CONN, _SFTP_CONN = "bench_b4_s3", "bench_b4_sftp"
_BUCKET = "bench-b4"


def _sizes(smoke: bool) -> list[tuple[int, int]]:
    """(files, bytes per file) of each set."""
    if smoke:
        return [(10, 100 * 1024), (2, 2 * 1024 * 1024)]
    return [(500, 1024 * 1024), (5, 200 * 1024 * 1024)]


def _label(count: int, size: int) -> str:
    return f"{count} x {size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{count} x {size // 1024} KB"


def _inputs(workdir: Path, count: int, size: int) -> Path:
    """``count`` files of ``size`` random bytes, kept between runs."""
    directory = workdir / f"b4-in-{count}x{size}"
    if directory.exists() and len(os.listdir(directory)) == count:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for index in range(count):
        with open(directory / f"part-{index:05d}.bin", "wb") as handle:
            left = size
            while left:
                chunk = os.urandom(min(left, 4 * 1024 * 1024))
                handle.write(chunk)
                left -= len(chunk)
    return directory


@contextlib.contextmanager
def _environment(connections: dict[str, dict[str, Any]]) -> Iterator[None]:
    """The connections as ``AIRFLOW_CONN_*`` variables while the figures run."""
    names = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(value) for conn_id, value in connections.items()}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Sides:
    """Both ends of B4: URLs for the flow, raw fsspec file systems for the baseline."""

    def __init__(self, s3: S3Server, sftp: SftpServer) -> None:
        self.s3, self.sftp = s3, sftp

    def s3_url(self, prefix: str) -> str:
        return f"s3://{_BUCKET}/{prefix}"

    def sftp_url(self, prefix: str) -> str:
        return f"sftp://{self.sftp.root}/{prefix}"

    def raw_s3(self) -> Any:
        import s3fs

        key, secret = self.s3.keys["admin"]
        return s3fs.S3FileSystem(
            key=key,
            secret=secret,
            endpoint_url=self.s3.endpoint,
            client_kwargs={"region_name": "us-east-1"},
            skip_instance_cache=True,
        )

    def raw_sftp(self) -> Any:
        import sshfs

        return sshfs.SSHFileSystem(
            "127.0.0.1",
            port=self.sftp.port,
            username=self.sftp.user,
            password=self.sftp.password,
            known_hosts=None,
            skip_instance_cache=True,
        )

    def raw_path(self, url: str) -> str:
        return url.split("://", 1)[1] if url.startswith("s3://") else url.removeprefix("sftp://")


def _raw(sides: _Sides, source: str, destination: str, s3_to_sftp: bool) -> Callable[[Path], None]:
    """The baseline: connect, list, then get + put one file after the other."""

    def run(scratch: Path) -> None:
        s3, sftp = sides.raw_s3(), sides.raw_sftp()
        source_fs, destination_fs = (s3, sftp) if s3_to_sftp else (sftp, s3)
        source_root, destination_root = sides.raw_path(source), sides.raw_path(destination)
        if s3_to_sftp:
            sftp.makedirs(destination_root, exist_ok=True)
        for remote in sorted(source_fs.find(source_root)):
            name = remote.rsplit("/", 1)[-1]
            local = str(scratch / name)
            source_fs.get_file(remote, local)
            destination_fs.put_file(local, f"{destination_root}/{name}")
            os.unlink(local)
        with contextlib.suppress(Exception):
            sftp.client.close()

    return run


def _flow(
    source: str, source_conn: str, destination: str, destination_conn: str, expected: int
) -> Callable[[Path], None]:
    """One ``ByoFlowOperator`` run with the ledger, a fresh flow id each time."""
    from bench.operator_run import execute_flow

    def run(_scratch: Path) -> None:
        execute_flow(
            "B4",
            expected,
            source=source,
            source_conn_id=source_conn,
            destination=destination,
            destination_conn_id=destination_conn,
            processor=IDENTITY,
        )

    return run


def _check_copies(sides: _Sides, inputs: Path, destinations: list[str]) -> None:
    """Every destination holds every input: the same names and sizes, and the first file byte for byte."""
    s3, sftp = sides.raw_s3(), sides.raw_sftp()
    first = sorted(inputs.iterdir())[0]
    for url in destinations:
        fs = s3 if url.startswith("s3://") else sftp
        root = sides.raw_path(url)
        sizes = {p.rsplit("/", 1)[-1]: int(info["size"]) for p, info in fs.find(root, detail=True).items()}
        wanted = {p.name: p.stat().st_size for p in inputs.iterdir()}
        if sizes != wanted:
            raise RuntimeError(f"B4: {url} does not hold the inputs: {len(sizes)} of {len(wanted)} files")
        if fs.cat_file(f"{root}/{first.name}") != first.read_bytes():
            raise RuntimeError(f"B4: {url}/{first.name} differs from its input")


def run(workdir: Path, *, smoke: bool, repeat: int) -> list[Row]:
    if os.geteuid() != 0:
        return [("B4 transfers: needs root (sshd and a throwaway SFTP user)", 0.0, None, "skipped")]
    from tests.servers import S3Server, SftpServer

    rows: list[Row] = []
    servers = Path(tempfile.mkdtemp(dir=workdir))
    try:
        with S3Server(servers) as s3, SftpServer(servers) as sftp:
            sides = _Sides(s3, sftp)
            connections = {_S3_CONN: s3.connection(), _SFTP_CONN: sftp.connection()}
            s3.client().create_bucket(Bucket=_BUCKET)
            with _environment(connections):
                _warm_up(workdir, sides)
                for count, size in _sizes(smoke):
                    rows += _figures(workdir, sides, count, size, repeat)
    finally:
        shutil.rmtree(servers, ignore_errors=True)
    return rows


def _upload_inputs(sides: _Sides, inputs: Path, tag: str) -> Path:
    """The inputs into the bucket (``in-<tag>/``) and the SFTP root (returned), untimed."""
    client = sides.s3.client()
    for path in sorted(inputs.iterdir()):
        client.upload_file(str(path), _BUCKET, f"in-{tag}/{path.name}")
    sftp_in = sides.sftp.root / f"in-{tag}"
    shutil.copytree(inputs, sftp_in)
    sides.sftp.give(sftp_in)
    return sftp_in


def _directions(sides: _Sides, tag: str) -> list[tuple[str, str, str, Callable[[str], str], str, bool]]:
    return [
        ("S3 -> SFTP", sides.s3_url(f"in-{tag}"), _S3_CONN, sides.sftp_url, _SFTP_CONN, True),
        ("SFTP -> S3", sides.sftp_url(f"in-{tag}"), _SFTP_CONN, sides.s3_url, _S3_CONN, False),
    ]


def _warm_up(workdir: Path, sides: _Sides) -> None:
    """
    Both sides once in each direction over two small files, untimed: the first run of a process
    pays imports, Airflow's secrets backends and the clients' set-up, which no repetition should.
    """
    inputs = _inputs(workdir, 2, 1024)
    sftp_in = _upload_inputs(sides, inputs, "warm")
    for _, source, source_conn, url_of, destination_conn, s3_to_sftp in _directions(sides, "warm"):
        outputs = [url_of("raw-warm"), url_of("flow-warm")]
        medians(
            1,
            workdir,
            raw=_raw(sides, source, outputs[0], s3_to_sftp),
            flow=_flow(source, source_conn, outputs[1], destination_conn, 2),
        )
        _remove(sides, outputs)
    _remove(sides, [sides.s3_url("in-warm")])
    shutil.rmtree(sftp_in, ignore_errors=True)


def _figures(workdir: Path, sides: _Sides, count: int, size: int, repeat: int) -> list[Row]:
    inputs = _inputs(workdir, count, size)
    tag = f"{count}x{size}"
    sftp_in = _upload_inputs(sides, inputs, tag)
    label = _label(count, size)
    rows: list[Row] = []
    for name, source, source_conn, url_of, destination_conn, s3_to_sftp in _directions(sides, tag):
        raw_out, flow_out = url_of(f"raw-{tag}"), url_of(f"flow-{tag}")
        times = medians(
            repeat,
            workdir,
            raw=_raw(sides, source, raw_out, s3_to_sftp),
            flow=_flow(source, source_conn, flow_out, destination_conn, count),
        )
        _check_copies(sides, inputs, [raw_out, flow_out])
        rows.append(
            (
                f"B4 {label}, {name}: operator + ledger vs sequential fsspec get + put (s)",
                times["flow"],
                times["raw"],
                "<= 1.0x",
            )
        )
        _remove(sides, [raw_out, flow_out])
    _remove(sides, [sides.s3_url(f"in-{tag}")])
    shutil.rmtree(sftp_in, ignore_errors=True)
    return rows


def _remove(sides: _Sides, urls: list[str]) -> None:
    s3 = sides.raw_s3()
    for url in urls:
        if url.startswith("s3://"):
            with contextlib.suppress(FileNotFoundError):
                s3.rm(sides.raw_path(url), recursive=True)
        else:
            shutil.rmtree(sides.raw_path(url), ignore_errors=True)
