"""B1's inputs and function, shared by the figures that run them (B1, B5, B6, W1/W2)."""

from __future__ import annotations

import csv
import io
import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TRANSFORM", "csv_files", "make_csv_files"]

#: CSV -> JSON Lines, a dict per row: B1's light function.
TRANSFORM = """
import csv

def process(file, ctx):
    with file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            row["amount"] = float(row["amount"])
            yield row
"""


def make_csv_files(directory: Path, count: int) -> None:
    """``count`` CSV files of ~4 KB (100 rows), kept between runs."""
    if directory.exists() and len(os.listdir(directory)) == count:
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "name", "country", "amount"])
    for index in range(100):
        writer.writerow([index, f"customer-{index:04d}", "NL", f"{index * 1.5:.2f}"])
    for index in range(count):
        (directory / f"orders-{index:05d}.csv").write_text(buffer.getvalue())


def csv_files(workdir: Path, count: int) -> Path:
    """The folder of ``count`` such files under ``workdir`` (``b1-in-<count>``), made if missing."""
    directory = workdir / f"b1-in-{count}"
    make_csv_files(directory, count)
    return directory
