"""
The ``[byo] sandbox`` setting: which mode is in effect, and whether bubblewrap works here.

``required`` refuses to run without a working sandbox, ``auto`` (the default) runs without one
only with a warning, ``off`` runs every child unsandboxed and probes nothing. Whether bubblewrap
works is found out once per process by starting one trivial sandbox (:func:`bubblewrap_status`).

Stdlib only at import: the worker imports it, and tests run it without Airflow.
"""

from __future__ import annotations

import functools
import subprocess
from typing import Literal

from airflow_byo.runner.sandbox import SandboxSpec, prepare_sandbox, worker_identity
from airflow_byo.runner.sandbox_command import INSTALL_BUBBLEWRAP, bwrap_and_prlimit
from airflow_byo.runner.sandbox_errors import config_error

__all__ = ["InEffect", "bubblewrap_status", "resolve_mode", "sandbox_mode"]

MODES = ("required", "auto", "off")
Mode = Literal["required", "auto", "off"]
InEffect = Literal["bubblewrap", "off"]


@functools.cache
def bubblewrap_status() -> tuple[bool, str]:
    """
    Whether bwrap exists, the seccomp filter can be built, *and* a sandbox can start here (one
    trivial sandboxed ``true``, cached).

    :return: ``(True, "bubblewrap <version>")`` or ``(False, "<why>; <how to fix>")``.
    """
    from airflow_byo.runner.seccomp_filter import seccomp_status

    bwrap, prlimit = bwrap_and_prlimit()
    if bwrap is None:
        return False, f"bubblewrap (bwrap) is not installed: {INSTALL_BUBBLEWRAP}"
    if prlimit is None:  # the limits are applied inside the sandbox by util-linux's prlimit
        return False, "prlimit is not installed: install the Debian package util-linux"
    works, why = seccomp_status()
    if not works:
        return False, why
    identity = None
    try:
        identity = worker_identity()
        probe = SandboxSpec(interpreter="/usr/bin/true")
        with prepare_sandbox(["/usr/bin/true"], probe, identity=identity) as launch:
            result = launch.run(timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap ({bwrap}) could not run: {exc}"
    except Exception as exc:  # noqa: BLE001 -- e.g. no free sandbox uid: the reason is the message
        return False, str(exc)
    finally:
        if identity is not None:
            identity.release()
    if result.returncode != 0:
        why_lines = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return False, (
            f"bubblewrap ({bwrap}) cannot create a sandbox here: {why_lines[0]}. Unprivileged user "
            "namespaces must be allowed (sysctl user.max_user_namespaces > 0; Debian <= 10: "
            "kernel.unprivileged_userns_clone=1; Ubuntu >= 23.10: an AppArmor profile for bwrap or "
            "kernel.apparmor_restrict_unprivileged_userns=0; in a container: a seccomp profile "
            "that allows clone/unshare of namespaces)"
        )
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return True, version or "bubblewrap"


def configured_off() -> bool:
    """Whether ``[byo] sandbox = off``: known without a probe, so a trusted setup pays nothing."""
    from airflow_byo.provider_config import setting

    return setting("sandbox").strip().lower() == "off"


def sandbox_mode() -> tuple[InEffect, str | None]:
    """The mode in effect for this worker's ``[byo] sandbox`` setting, and a warning to log once."""
    from airflow_byo.provider_config import setting

    if configured_off():
        return "off", None  # no probe
    return resolve_mode(setting("sandbox"), bubblewrap_status())


def resolve_mode(setting: str, status: tuple[bool, str]) -> tuple[InEffect, str | None]:
    """
    The sandbox mode in effect for ``[byo] sandbox = required | auto | off``.

    :param setting: the configured value (``""`` means the default, ``auto``).
    :param status: :func:`bubblewrap_status` (passed in so this stays a pure function).
    :return: ``("bubblewrap" | "off", warning or None)``; ``auto`` without bubblewrap warns.
    :raises ByoConfigError: for an unknown value, or ``required`` when bubblewrap cannot work.
    """
    value = (setting or "auto").strip().lower()
    if value not in MODES:
        raise config_error(f"[byo] sandbox = {setting!r} is not valid: use one of {', '.join(MODES)}")
    works, reason = status
    if value == "off":
        return "off", None
    if works:
        return "bubblewrap", None
    if value == "required":
        raise config_error(f"[byo] sandbox = required, but {reason}")
    return "off", (
        f"the processor runs WITHOUT a sandbox: {reason}. Fix that to enable it, or set "
        "[byo] sandbox = off to silence this warning for trusted code"
    )
