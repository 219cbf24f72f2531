"""
Test-mode previews of binary outputs, decoded in the child (airflow_byo.runtime.decode): with
pyarrow/fastavro in the flow's environment a Parquet, Arrow or Avro output previews as schema +
first rows, though the worker has neither library; without them the preview says what to add.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from airflow_byo.runtime.contract import OutputSpec
from airflow_byo.runtime.decode import binary_format, decoded_previews


def test_formats_are_told_by_their_magic_bytes() -> None:
    assert binary_format(b"PAR1\x15\x04", "x.bin") == "parquet"
    assert binary_format(b"ARROW1\x00\x00", "x") == "arrow"
    assert binary_format(b"\xff\xff\xff\xff\x10\x00", "x.arrows") == "arrow"
    assert binary_format(b"\xff\xff\xff\xff\x10\x00", "x.bin") is None
    assert binary_format(b"Obj\x01\x04", "x") == "avro"
    assert binary_format(b"id,name\n", "x.csv") is None


def test_without_the_library_the_preview_says_which_package_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").write_bytes(b"PAR1 not really")
    (tmp_path / "b").write_bytes(b"Obj\x01 not really")
    (tmp_path / "c").write_text("text is the worker's to read")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "fastavro", None)
    outputs = [OutputSpec(n, str(tmp_path / n)) for n in ("a", "b", "c")]
    parquet, avro = decoded_previews(outputs, 5)
    assert (parquet["output"], parquet["format"], parquet["rows"]) == (0, "parquet", [])
    assert parquet["error"] == (
        "pyarrow is not installed in the flow's environment: add it to the flow's packages to "
        "preview parquet outputs"
    )
    assert (avro["output"], avro["error"].split(" is not")[0]) == (1, "fastavro")


# -- in a real flow environment with pyarrow and fastavro -----------------------------------------

WRITE_TABLES = """
import fastavro
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

def process(file, ctx):
    n = int(file.open().read())
    table = pa.table({"id": list(range(n)), "name": [f"customer-{i}" for i in range(n)],
                      "amount": [i * 1.5 for i in range(n)]})
    with ctx.output(file.stem + ".parquet", "wb") as out:
        pq.write_table(table, out)
    with ctx.output(file.stem + ".arrow", "wb") as out, pa.ipc.new_file(out, table.schema) as writer:
        writer.write_table(table)
    schema = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]}
    with ctx.output(file.stem + ".avro", "wb") as out:
        fastavro.writer(out, schema, [{"id": i} for i in range(n)])
"""


@pytest.mark.venv
def test_parquet_arrow_and_avro_outputs_preview_as_schema_and_rows(tmp_path: Path, venv_cache: Path) -> None:
    from airflow_byo.environment import ensure_environment
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.packages import parse_packages
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.runner.preview import format_previews, preview_file
    from airflow_byo.storage import Location
    from tests.conftest import RecordingLogger, make_files

    with pytest.raises(ImportError):  # the worker cannot read them: only the child can
        import pyarrow  # noqa: F401
    python = ensure_environment(parse_packages("pyarrow==19.0.1,fastavro==1.10.0"), venv_cache)
    runner = FlowRunner(
        flow=ResolvedFlow.resolve(
            textwrap.dedent(WRITE_TABLES), runtime_config={"job_config": {"preview_lines": 3}}
        ),
        environment=FlowEnvironment(str(python)),
        log=RecordingLogger(),
    )
    make_files(tmp_path / "in", {"orders.txt": "50"})
    location = Location(str(tmp_path / "in"))
    summary, previews = preview_file(runner, location, location.file_info("orders.txt"))
    assert not summary.failed
    parquet, arrow, avro = previews
    assert (parquet.format, parquet.columns, parquet.types) == (
        "parquet",
        ["id", "name", "amount"],
        ["int64", "string", "double"],
    )
    assert parquet.rows == [
        ["0", "customer-0", "0.0"],
        ["1", "customer-1", "1.5"],
        ["2", "customer-2", "3.0"],
    ]
    assert (parquet.total_rows, parquet.truncated) == (50, True)
    assert parquet.note == "parquet, decoded in the flow's environment by pyarrow 19.0.1"
    assert (arrow.format, arrow.rows, arrow.total_rows) == ("arrow", parquet.rows, 50)
    assert (avro.format, avro.columns, avro.types, avro.rows) == (
        "avro",
        ["id"],
        ["long"],
        [["0"], ["1"], ["2"]],
    )
    text = format_previews([parquet.as_dict()], heading="== ")
    assert text[:4] == [
        f"== orders.parquet ({parquet.size} bytes, 50 rows)",
        "    [parquet, decoded in the flow's environment by pyarrow 19.0.1]",
        "    id: int64 | name: string | amount: double",
        "    ----------+--------------+---------------",
    ]
    assert text[4] == "    0         | customer-0   | 0.0"
    assert not any("first bytes" in line for line in text)
