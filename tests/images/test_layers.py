"""
Layers unpacked safely (issue 25): hostile members refused or neutralised, OCI whiteouts and
opaque folders applied, and a hostile image that is neutralised still runs a flow.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from airflow_byo.images.layers import CacheFull, LayerRefused, RootWriter, SizeBudget
from tests.images.image_builder import layer, member

SYM, LNK, DIR, CHR, FIFO = (
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.DIRTYPE,
    tarfile.CHRTYPE,
    tarfile.FIFOTYPE,
)


def unpack(root: Path, *layers: bytes, limit: int | None = None) -> RootWriter:
    root.mkdir(exist_ok=True)
    with RootWriter(str(root), SizeBudget(limit)) as writer:
        for number, data in enumerate(layers, 1):
            writer.apply(io.BufferedReader(io.BytesIO(data)), f"{number}/{len(layers)}")
    return writer


@pytest.mark.parametrize(
    ("name", "kind", "link", "problem"),
    [
        ("../escaped.txt", tarfile.REGTYPE, "", "a path with '..': it would leave the image's root"),
        ("etc/../../escaped.txt", tarfile.REGTYPE, "", "a path with '..'"),
        ("/etc/cron.d/evil", tarfile.REGTYPE, "", "an absolute path: a layer's paths are relative"),
        ("usr/bin/sneaky", LNK, "../../../etc/shadow", "a hard link target with '..'"),
        ("usr/bin/sneaky", LNK, "/etc/shadow", "an absolute hard link target"),
        (
            "usr/bin/sneaky",
            LNK,
            "etc/not-in-the-image",
            "a hard link to 'etc/not-in-the-image', which the image",
        ),
    ],
)
def test_members_leaving_the_root_are_refused(
    tmp_path: Path, name: str, kind: bytes, link: str, problem: str
) -> None:
    hostile = layer([(member("etc", DIR, mode=0o755), None), (member(name, kind, link=link), b"pwned")])
    with pytest.raises(LayerRefused) as caught:
        unpack(tmp_path / "root", hostile)
    assert f"layer 1/1: member {name!r}: {problem}" in str(caught.value)
    assert not (tmp_path / "escaped.txt").exists()


def test_symlinks_out_devices_and_setuid_bits_are_neutralised(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret").write_text("the host's")
    hostile = layer(
        [
            (member("etc", DIR, mode=0o755), None),
            (member("etc/host", SYM, link=str(outside)), None),  # absolute, out of the image
            (member("etc/up", SYM, link="../../../.."), None),  # relative, climbing out
            (member("etc/host/secret"), b"overwritten?"),  # through the link: lands in the image
            (member("etc/up/planted"), b"planted?"),
            (member("usr/bin/su", mode=0o4755), b"#!setuid"),
            (member("usr/bin/sg", mode=0o2711), b"#!setgid"),
            (member("tmp", DIR, mode=0o1777), None),
            (member("dev/mem", CHR), None),
            (member("dev/fifo", FIFO), None),
        ]
    )
    root = tmp_path / "root"
    writer = unpack(root, hostile)
    assert (outside / "secret").read_text() == "the host's"  # untouched
    assert not (tmp_path / "planted").exists()
    assert not Path("/planted").exists()
    # A link resolves in the image's root: an absolute one from it, '..' never above it.
    assert (root / str(outside).lstrip("/") / "secret").read_text() == "overwritten?"
    assert (root / "planted").read_text() == "planted?"
    assert os.readlink(root / "etc/host") == str(outside)  # kept as written: the sandbox's / is the image
    assert stat.S_IMODE((root / "usr/bin/su").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "usr/bin/sg").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o755
    assert not (root / "dev/mem").exists()
    assert not (root / "dev/fifo").exists()
    report = writer.report.describe()
    assert "2 device nodes/FIFOs dropped" in report
    assert "setuid/setgid/sticky bits cleared on 2 files" in report


def test_whiteouts_and_opaque_folders_hide_lower_layers(tmp_path: Path) -> None:
    lower = layer(
        [
            (member("app", DIR), None),
            (member("app/keep.txt"), b"keep"),
            (member("app/gone.txt"), b"gone"),
            (member("app/old", DIR), None),
            (member("app/old/a.txt"), b"a"),
            (member("data", DIR), None),
            (member("data/lower.txt"), b"lower"),
            (member("data/sub", DIR), None),
            (member("data/sub/deep.txt"), b"deep"),
        ]
    )
    upper = layer(
        [
            (member("app/.wh.gone.txt"), b""),
            (member("app/.wh.old"), b""),
            (member("data/upper.txt"), b"upper"),  # before the marker, in the same layer: kept
            (member("data/.wh..wh..opq"), b""),
            (member("app/keep.txt"), b"replaced"),
        ]
    )
    root = tmp_path / "root"
    unpack(root, lower, upper)
    assert sorted(os.listdir(root / "app")) == ["keep.txt"]
    assert (root / "app/keep.txt").read_text() == "replaced"
    assert sorted(os.listdir(root / "data")) == ["upper.txt"]


def test_a_new_entry_replaces_whatever_was_at_its_path(tmp_path: Path) -> None:
    lower = layer([(member("x", DIR), None), (member("x/inner.txt"), b"1"), (member("y"), b"file")])
    upper = layer([(member("x"), b"now a file"), (member("y", DIR), None), (member("y/z"), b"2")])
    root = tmp_path / "root"
    unpack(root, lower, upper)
    assert (root / "x").read_text() == "now a file"
    assert (root / "y/z").read_text() == "2"


def test_file_times_are_kept_so_bytecode_stays_valid(tmp_path: Path) -> None:
    root = tmp_path / "root"
    unpack(root, layer([(member("lib/mod.py"), b"x = 1\n")]))
    assert (root / "lib/mod.py").stat().st_mtime == 1700000000


def test_an_image_over_the_cache_cap_stops_unpacking(tmp_path: Path) -> None:
    big = layer([(member(f"f{n}"), b"x" * 4096) for n in range(10)])
    with pytest.raises(CacheFull):
        unpack(tmp_path / "root", big, limit=20_000)
