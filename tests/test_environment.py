"""Flow environments: real virtualenvs in the standard provider's venv cache, built with uv (or pip)."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_byo.environment import PYTHON_VERSION, ensure_environment, environment_key
from airflow_byo.exceptions import ByoPackageError
from airflow_byo.flow import FlowEnvironment, ResolvedFlow
from airflow_byo.packages import parse_packages
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.storage import Location
from tests.conftest import RecordingLogger

pytestmark = pytest.mark.venv

# Not a dependency of anything the worker has (humanize is: Celery's flower pulls it in).
PINNED = "pyfiglet==1.0.2"
# The benchmark's pin (B2), so uv's cache usually has it already.
HUMANIZE = "humanize==4.11.0"

# One builder process: imports everything (Airflow too), says "ready", waits for a line on stdin
# (so several start building at the same moment), then prints the interpreter ensure_environment
# returns.
BUILDER = """
import json, sys
from pathlib import Path
import airflow.providers.standard.operators.python
from airflow_byo.environment import ensure_environment
print("ready", flush=True)
sys.stdin.readline()
print(ensure_environment(json.loads(sys.argv[2]), Path(sys.argv[1])), flush=True)
"""

# A uv in front of the real one: notes each call (so a test can count installs) and, when
# UV_SHIM_HOLD is set, stops before "uv pip install" until that file exists (so a test can kill
# its builder mid-install).
UV_SHIM = """#!/bin/sh
printf '%s\\n' "$*" >> "$UV_SHIM_LOG"
if [ "$1 $2" = "pip install" ] && [ -n "$UV_SHIM_HOLD" ]; then
  : > "$UV_SHIM_HOLD.started"
  while [ ! -e "$UV_SHIM_HOLD" ]; do sleep 0.05; done
fi
exec {real} "$@"
"""


def test_pinned_package_is_imported_in_the_child_and_absent_from_the_worker(
    venv_cache: Path, tmp_path: Path
) -> None:
    assert importlib.util.find_spec("pyfiglet") is None, "the worker must not have the flow's package"
    python = ensure_environment(parse_packages(PINNED), venv_cache)
    code = textwrap.dedent(
        """
        import importlib.metadata, importlib.util, sys
        import pyfiglet
        def process(file, ctx):
            return {
                "pyfiglet": importlib.metadata.version("pyfiglet"),
                "airflow_importable": importlib.util.find_spec("airflow") is not None,
                "executable": sys.executable,
            }
        """
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    source = Location(str(tmp_path / "in"))
    summary = FlowRunner(
        flow=ResolvedFlow.resolve(code),
        environment=FlowEnvironment(str(python)),
        log=RecordingLogger(),
    ).run(source, Location(str(tmp_path / "out")), source.list_files())
    assert summary.failed == []
    record = json.loads((tmp_path / "out" / "a.jsonl").read_text())
    assert record == {"pyfiglet": "1.0.2", "airflow_importable": False, "executable": str(python)}


def test_same_packages_share_one_environment_whatever_their_order(venv_cache: Path) -> None:
    first = ensure_environment(parse_packages(f"{PINNED},unidecode==1.3.8"), venv_cache)
    second = ensure_environment(parse_packages(["unidecode==1.3.8", PINNED]), venv_cache)
    assert first == second
    assert first.exists()


def test_a_relative_cache_path_gives_an_absolute_interpreter(
    venv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child starts in a directory of its own: a relative path would name no interpreter."""
    monkeypatch.chdir(venv_cache.parent)
    python = ensure_environment(parse_packages(PINNED), Path(venv_cache.name))
    assert python.is_absolute()
    assert python == ensure_environment(parse_packages(PINNED), venv_cache)


def test_concurrent_builds_of_one_environment_are_safe(tmp_path: Path) -> None:
    cache = tmp_path / "venvs"
    requirements = parse_packages("unidecode==1.3.8")
    with ThreadPoolExecutor(max_workers=3) as pool:
        pythons = list(pool.map(lambda _: ensure_environment(requirements, cache), range(3)))
    assert len(set(pythons)) == 1
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [pythons[0].parent.parent.name]
    assert os.access(pythons[0], os.X_OK)


def test_unknown_package_names_the_requirement(tmp_path: Path) -> None:
    missing = "airflow-byo-no-such-package-xyz==1.0.0"
    with pytest.raises(
        ByoPackageError, match=r"could not build the environment for packages \['airflow-byo-no-such"
    ) as raised:
        ensure_environment([missing], tmp_path / "venvs")
    # The installer's own error is quoted, and names the package too.
    installer_says = str(raised.value).split("uv pip install exited with code 1: ", 1)[1]
    assert "airflow-byo-no-such-package-xyz" in installer_says
    assert [p.suffix for p in (tmp_path / "venvs").iterdir()] == [".lock"], "no partial environment"


# -- the standard provider's cache, shared -------------------------------------------------------


def _noop() -> None:
    """A PythonVirtualenvOperator needs a function; it is never called here."""


def test_the_cache_key_is_the_standard_providers_and_its_operator_reuses_the_environment(
    venv_cache: Path,
) -> None:
    from airflow.providers.standard.operators.python import PythonVirtualenvOperator

    requirements = parse_packages(f"unidecode==1.3.8,{PINNED}")
    # A PythonVirtualenvOperator as a user would write it for the same environment.
    operator = PythonVirtualenvOperator(
        task_id="same_settings",
        python_callable=_noop,
        requirements=list(reversed(requirements)),
        python_version=PYTHON_VERSION,
        system_site_packages=False,
        venv_cache_path=venv_cache,
    )
    cache_hash, hash_data = operator._calculate_cache_hash()
    assert environment_key(requirements)[:2] == (cache_hash, hash_data)

    python = ensure_environment(requirements, venv_cache)
    venv = venv_cache / f"venv-{cache_hash}"
    assert python == venv / "bin" / "python"
    assert (venv / "install_complete_marker.json").read_text(encoding="utf8") == hash_data
    (venv / "built-by-byo").touch()
    assert operator._ensure_venv_cache_exists(venv_cache) == venv
    assert (venv / "built-by-byo").exists(), "the provider must reuse the environment, not rebuild it"


# -- concurrent and killed builds ----------------------------------------------------------------


@pytest.fixture
def uv_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``uv`` first on PATH that logs its calls to the returned file (see UV_SHIM)."""
    real = shutil.which("uv")
    if real is None:
        pytest.skip("needs uv on PATH")
    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir()
    shim = bin_dir / "uv"
    shim.write_text(UV_SHIM.format(real=real))
    shim.chmod(0o755)
    calls = tmp_path / "uv-calls.log"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("UV_SHIM_LOG", str(calls))
    monkeypatch.delenv("UV_SHIM_HOLD", raising=False)
    return calls


def _installs(calls: Path) -> int:
    return sum(line.startswith("pip install") for line in calls.read_text().splitlines())


def _start_builder(cache: Path, requirements: list[str], **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(cache), json.dumps(requirements)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Answered from the environment: no metadata DB lookup (the same hash as an unset Variable).
        env={**os.environ, "AIRFLOW_VAR_PYTHON_VIRTUALENV_OPERATOR_CACHE_KEY": "", **env},
    )
    return process


def _ready(process: subprocess.Popen[str]) -> None:
    """Wait until the builder is past its imports."""
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready", process.communicate()


def _go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def _env_python_says(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_builder_processes_started_at_once_build_one_environment_once(tmp_path: Path, uv_shim: Path) -> None:
    cache = tmp_path / "venvs"
    requirements = parse_packages(HUMANIZE)
    builders = [_start_builder(cache, requirements) for _ in range(3)]
    for builder in builders:  # released together once all three are past their imports
        _ready(builder)
    for builder in builders:
        _go(builder)
    outputs = [builder.communicate(timeout=600) for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0, 0], outputs

    # The last line is the interpreter; the lines before it are the builder's log.
    pythons = {stdout.strip().splitlines()[-1] for stdout, _ in outputs}
    expected = cache / f"venv-{environment_key(requirements)[0]}" / "bin" / "python"
    assert pythons == {str(expected)}
    assert _installs(uv_shim) == 1, uv_shim.read_text()
    said = [stdout for stdout, _ in outputs]
    assert sum("New Python virtual environment created" in log for log in said) == 1, said
    assert sum("Reusing cached Python virtual environment" in log for log in said) == 2, said
    assert sorted(p.name for p in cache.iterdir()) == [
        expected.parent.parent.name,
        f"{expected.parent.parent.name}.lock",
    ]
    # The environment works and holds the flow's packages only (not even pip: it is not seeded).
    probe = "import humanize, importlib.metadata as m; print(sorted(d.name for d in m.distributions()))"
    assert _env_python_says(str(expected), probe) == "['humanize']"


def test_a_build_killed_during_install_is_rebuilt_not_used(tmp_path: Path, uv_shim: Path) -> None:
    cache = tmp_path / "venvs"
    requirements = parse_packages(HUMANIZE)
    venv = cache / f"venv-{environment_key(requirements)[0]}"
    hold = tmp_path / "hold"
    builder = _start_builder(cache, requirements, UV_SHIM_HOLD=str(hold))
    try:
        _ready(builder)
        _go(builder)
        started = Path(f"{hold}.started")
        deadline = time.monotonic() + 300  # a bound on waiting, not a measurement
        while not started.exists():
            assert builder.poll() is None, builder.communicate()
            assert time.monotonic() < deadline, "the builder never reached uv pip install"
            time.sleep(0.05)
        builder.send_signal(signal.SIGKILL)  # mid-build: the venv exists, its packages do not
        builder.communicate(timeout=60)
        assert venv.is_dir()
        assert not (venv / "install_complete_marker.json").exists()
        # The installer the killed builder started still holds the lock: nobody deletes the folder
        # under it.
        with open(f"{venv}.lock") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        hold.touch()  # let the orphaned installer go on (and end)

    python = ensure_environment(requirements, cache)  # waits for the orphan, then rebuilds
    assert python == venv / "bin" / "python"
    assert _installs(uv_shim) == 2, uv_shim.read_text()
    assert (venv / "install_complete_marker.json").read_text(encoding="utf8") == environment_key(
        requirements
    )[1]
    assert _env_python_says(str(python), "import humanize; print(humanize.__version__)") == "4.11.0"


# -- without uv ----------------------------------------------------------------------------------


def test_without_uv_the_environment_is_built_with_venv_and_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__STANDARD__VENV_INSTALL_METHOD", "pip")  # as the provider reads it
    python = ensure_environment(parse_packages("unidecode==1.3.8"), tmp_path / "venvs")
    assert (python.parent / "pip").exists(), "python -m venv, then the environment's own pip"
    assert _env_python_says(str(python), "import unidecode; print(unidecode.unidecode('Zürich'))") == "Zurich"
