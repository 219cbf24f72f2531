"""
Flows on image runtimes through the path users run (issue 25): a ByoFlowOperator task whose
runtime is an OCI image built on this machine (tests/images/fixtures.py), run daemonless in the
bubblewrap sandbox with the image's root file system at ``/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.images.cache import cached_images
from airflow_byo.runner import sandbox_mode
from tests.images.helpers import IMAGE_ENV, NEW_MINOR, WORKDIR, ImageSet, outputs, run_on_image, worker_has

pytest_plugins = ["tests.images.fixtures"]  # shared fixtures

pytestmark = pytest.mark.skipif(
    not sandbox_mode.bubblewrap_status()[0],
    reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
)

#: Calls the image's own tool on each file, and says which Python ran it.
REVERSE = """
import subprocess, sys

def process(file, ctx):
    done = subprocess.run(["byo-rev"], input=file.open("rb").read(), capture_output=True, check=True)
    ctx.insight("python", ".".join(map(str, sys.version_info[:2])))
    return done.stdout.decode()
"""

#: What the child sees of its world.
LOOK = """
import json, os, resource, sys

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror}"

def write(path):
    with open(path, "w") as handle:
        handle.write("x")

def process(file, ctx):
    return json.dumps({
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "python": list(sys.version_info[:2]),
        "executable": sys.executable,
        "root": sorted(os.listdir("/")),
        "write_root": attempt(lambda: write("/planted")),
        "write_usr": attempt(lambda: write("/usr/local/bin/planted")),
        "write_workdir": attempt(lambda: write("planted")),
        "write_tmp": attempt(lambda: write("/tmp/scratch")),
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
        "as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    })
"""


def test_a_flow_on_an_image_runtime_processes_files_with_the_images_tool(
    tmp_path: Path, image_runtimes: Path
) -> None:
    assert not worker_has("byo-rev")  # only the image has it
    files = {"a.txt": "hello", "b.txt": "image"}
    result, out, log = run_on_image(tmp_path, REVERSE, "tools-bare", files=files)
    assert result["sandbox"] == "bubblewrap"
    assert (result["files_processed"], result["files_failed"]) == (2, 0)
    assert outputs(out) == {"a.txt": "olleh", "b.txt": "egami"}
    assert result["insights"]["python"] == NEW_MINOR != f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert "Runtime 'tools-bare': image oci:" in log.text
    assert "packages (none: the image's Python as it is)" in log.text


def test_the_images_env_and_workdir_apply_never_the_workers_and_its_user_is_ignored(
    tmp_path: Path, image_runtimes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BYO_WORKER_SECRET", "worker-only")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    job = {"max_processes": 77, "max_memory_mb": 1536, "max_output_mb": 5}
    result, out, _ = run_on_image(tmp_path, LOOK, "tools-bare", job=job)
    assert result["files_processed"] == 1, result
    seen = json.loads((out / "a.txt").read_text())
    env = seen["env"]
    assert {key: env[key] for key in IMAGE_ENV} == IMAGE_ENV  # the image's PATH and LANG, not the worker's
    assert "BYO_WORKER_SECRET" not in env
    assert not any(key.startswith("AIRFLOW") for key in env)
    assert (env["HOME"], env["TMPDIR"]) == ("/tmp", "/tmp")
    assert seen["cwd"] == WORKDIR  # the image's WorkingDir (created: the image has no such folder)
    assert seen["uid"] == 65534  # the sandbox's user, not the image's User 1000
    assert seen["root"] == ["bin", "dev", "etc", "lib", "lib64", "opt", "proc", "tmp", "usr", "work"]
    for where in ("write_root", "write_usr", "write_workdir"):
        assert seen[where] == "OSError: Read-only file system", where
    assert seen["write_tmp"] == "ok"
    assert (seen["nproc"], seen["as"], seen["fsize"]) == (77, 1536 << 20, 5 << 20)


def test_base_packages_and_the_flows_override_go_into_a_venv_of_the_images_python(
    tmp_path: Path, image_runtimes: Path
) -> None:
    code = """
import sys, six

def process(file, ctx):
    return f"{six.__version__} {sys.prefix != sys.base_prefix} {sys.version_info[:2]}"
"""
    base, out_base, _ = run_on_image(tmp_path / "base", code, "tools")
    assert base["requirements"] == ["six==1.16.0"]
    assert outputs(out_base)["a.txt"].startswith("1.16.0 True")
    override, out_override, log = run_on_image(tmp_path / "flow", code, "tools", packages=["six==1.17.0"])
    assert override["requirements"] == ["six==1.17.0"]
    assert outputs(out_override)["a.txt"] == f"1.17.0 True {tuple(map(int, NEW_MINOR.split('.')))}"
    assert "The flow's six==1.17.0 overrides six==1.16.0 of runtime 'tools'" in log.text


def test_two_images_with_different_digests_run_side_by_side(
    tmp_path: Path, image_runtimes: Path, test_images: ImageSet
) -> None:
    if "py39" not in test_images.digests:
        pytest.skip("no CPython 3.9 on this machine to build a second image with")
    new, out_new, _ = run_on_image(tmp_path / "new", REVERSE, "tools-bare")
    old, out_old, _ = run_on_image(tmp_path / "old", REVERSE, "tools39")
    assert (new["insights"]["python"], old["insights"]["python"]) == (NEW_MINOR, "3.9")
    assert outputs(out_new) == outputs(out_old) == {"a.txt": "olleh"}
    cached = {image.digest for image in cached_images()}
    assert {test_images.digests["py312"], test_images.digests["py39"]} <= cached


def test_an_image_without_python_names_the_fix(tmp_path: Path, image_runtimes: Path) -> None:
    with pytest.raises(ByoConfigError) as caught:
        run_on_image(tmp_path, REVERSE, "nopython")
    message = str(caught.value)
    assert "runtime 'nopython' (" in message
    assert (
        "has no Python: no python3 or python on its PATH (/opt/tools/bin:/usr/local/bin:/usr/bin:/bin)"
        in message
    )
    assert "Fix: set python: to the interpreter's path inside the image" in message
    with pytest.raises(
        ByoConfigError, match=r"python '/opt/python/bin/python3' is not an executable file in the image"
    ):
        run_on_image(tmp_path, REVERSE, "elsewhere")


def test_an_image_runtime_refuses_to_run_without_the_sandbox(
    tmp_path: Path, image_runtimes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX", "off")
    with pytest.raises(ByoConfigError) as caught:
        run_on_image(tmp_path, REVERSE, "tools-bare")
    assert "which needs the bubblewrap sandbox, and it is not in effect here: [byo] sandbox = off" in str(
        caught.value
    )


def test_an_image_flow_may_not_name_its_own_interpreter(image_runtimes: Path) -> None:
    from airflow_byo.flow import ResolvedFlow

    with pytest.raises(ByoConfigError, match="python_interpreter cannot be combined with runtime 'tools'"):
        ResolvedFlow.resolve(REVERSE, runtime="tools", python_interpreter=sys.executable)


#: An ordinary user's worker: unpacks the image, builds a venv on it and runs a child in it.
AS_USER = """
import sys
sys.path[:0] = sys.argv[3:]
from airflow_byo import provider_config
provider_config.STANDALONE = True  # no Airflow: its config is root's
from pathlib import Path
from airflow_byo.images.cache import ensure_image
from airflow_byo.images.reference import parse_reference
from airflow_byo.images.venv import ensure_image_venv
from airflow_byo.runner.sandbox import SandboxSpec, prepare_sandbox, worker_identity
image = ensure_image(parse_reference(sys.argv[1]), lambda: None, cache=Path(sys.argv[2]))
venv = ensure_image_venv(image, image.python.path, ["six==1.17.0"])
python = venv + "/bin/python"
spec = SandboxSpec(interpreter=python, image=image.image_root(venv), max_processes=64)
code = "import os, sys, six; print(sys.version_info[:2], six.__version__, os.getcwd(), os.getuid())"
assert worker_identity() is None  # not root: the child runs as this user, in its own namespace
with prepare_sandbox([python, "-I", "-c", code], spec) as launch:
    done = launch.run(timeout=120)
print(done.returncode, done.stdout.strip(), done.stderr[-2000:])
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a throwaway user (root only); this worker is one")
def test_an_ordinary_users_worker_unpacks_builds_and_runs_an_image(test_images: ImageSet) -> None:
    import tempfile

    from tests.conftest import ROOT, remove_user, throwaway_user

    site = next(p for p in sys.path if p.endswith("site-packages"))
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("an ordinary user needs an interpreter it can reach: /usr/bin/python3 is missing")
    user = throwaway_user("byoimg")
    tmp_path = Path(tempfile.mkdtemp(prefix="byo-image-user-"))  # pytest's own folder is root's alone
    try:
        tmp_path.chmod(0o755)
        layout = tmp_path / "layout"
        shutil.copytree(test_images.layout, layout)
        for path in [tmp_path, *tmp_path.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        script = tmp_path / "as_user.py"
        script.write_text(AS_USER)
        reference = f"oci:{layout}:py312@{test_images.digests['py312']}"
        drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
        environment = {"HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        environment |= {key: os.environ[key] for key in ("SSL_CERT_FILE",) if key in os.environ}  # uv's CA
        done = subprocess.run(
            [
                *drop,
                "/usr/bin/python3",
                "-I",
                str(script),
                reference,
                str(tmp_path / "cache"),
                str(ROOT),
                site,
            ],
            capture_output=True,
            text=True,
            env=environment,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        expected = f"0 {tuple(map(int, NEW_MINOR.split('.')))} 1.17.0 {WORKDIR} 65534"
        assert done.stdout.strip().startswith(expected), done.stdout
    finally:
        remove_user(user)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_pages_path_asks_the_interpreter_first_and_runs_the_sample_in_the_image(
    tmp_path: Path, image_runtimes: Path
) -> None:
    """The BYO Flows page's Test takes ``interpreter()`` and hands it over as the environment."""
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.sample_run import run_sample
    from tests.conftest import RecordingLogger

    flow = ResolvedFlow.resolve(REVERSE, runtime="tools", packages=["six==1.17.0"])
    python = flow.interpreter()
    assert python is not None
    assert python.endswith("/bin/python")  # the flow's venv on the image
    sample = tmp_path / "samples" / "s.txt"
    sample.parent.mkdir()
    sample.write_text("sample")
    run = run_sample(flow, str(sample), log=RecordingLogger(), environment=FlowEnvironment(python))
    assert run.failure is None
    assert [preview.lines for preview in run.previews] == [["elpmas"]]
    assert run.as_dict()["flow"]["image"] == flow.runtime.image
