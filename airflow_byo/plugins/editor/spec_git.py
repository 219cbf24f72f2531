"""
Git for the spec folder: when it lies in a git work tree, every save, delete and revert of the
page is a commit of that one file, authored by the Airflow user, and -- with ``[byo]
spec_git_push_conn_id`` -- pushed to the connection's remote.

Git runs with a clean environment (no inherited ``GIT_*`` variable, no terminal prompt, no hooks,
no signing), a timeout, and ``LC_ALL=C``. A push's credentials never reach an argument list or a
message: an HTTPS login and password go to git through a ``GIT_ASKPASS`` helper in a private
temporary folder, which reads them from the environment of that one git process; any secret (and a
URL's ``user:password@``) is scrubbed from errors. A failed commit or push never loses the saved
file: the answer says what failed (:class:`GitResult`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["GitResult", "commit_file", "work_tree"]

TIMEOUT_SECONDS = 30.0
PUSH_TIMEOUT_SECONDS = 60.0
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$BYO_GIT_USERNAME" ;;
  *) printf '%s\\n' "$BYO_GIT_PASSWORD" ;;
esac
"""
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SETTINGS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "credential.helper=")


class GitError(Exception):
    """A git command failed (the message is scrubbed of secrets)."""


@dataclass
class GitResult:
    """What git did after a save: the commit, whether it was pushed, what failed."""

    commit: str | None = None
    pushed: bool | None = None  # None: no push configured
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    return env | (extra or {})


def _git(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
    secrets: tuple[str, ...] = (),
) -> str:
    """Run ``git -C cwd <args>``; its stdout, or :class:`GitError` with its stderr (scrubbed)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *_SETTINGS, *args],
            capture_output=True,
            text=True,
            env=env or _env(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise GitError("git is not installed on the api-server") from None
    if done.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_scrub(done.stderr.strip() or done.stdout.strip(), secrets)}")
    return done.stdout.strip()


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _USERINFO.sub("***@", text)[:1000]


def work_tree(folder: Path) -> Path | None:
    """The top of the git work tree ``folder`` lies in, or None."""
    try:
        top = _git(folder, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(top) if top else None


def _identity(user: str) -> tuple[str, str]:
    name = re.sub(r"[<>\n\r\0]", "", user).strip() or "airflow"
    local = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    return name, f"{local}@airflow"


def commit_file(
    folder: Path, file: str, *, user: str, message: str, push_conn_id: str | None
) -> GitResult | None:
    """
    Commit ``file`` (relative to ``folder``; added, changed or deleted) alone, as ``user``; then push
    when ``push_conn_id`` is set. None when ``folder`` is not in a git work tree.
    """
    top = work_tree(folder)
    if top is None:
        return None
    path = str(folder / file)
    name, email = _identity(user)
    result = GitResult()
    try:
        _git(top, "add", "--", path)
        identity = ("-c", f"user.name={name}", "-c", f"user.email={email}")
        _git(top, *identity, "commit", "--no-verify", "--quiet", "-m", message, "--", path)
        result.commit = _git(top, "rev-parse", "HEAD")
    except GitError as exc:
        result.error = f"the file was saved, but not committed: {exc}"
        return result
    if push_conn_id:
        try:
            push(top, push_conn_id)
            result.pushed = True
        except GitError as exc:
            result.pushed = False
            result.error = f"the file was saved and committed ({result.commit[:12]}), but not pushed: {exc}"
    return result


def push(top: Path, conn_id: str) -> None:
    """Push the current branch of work tree ``top`` to the remote of connection ``conn_id``."""
    from airflow_byo.connections import get_connection

    try:
        connection = get_connection(conn_id, "[byo] spec_git_push_conn_id")
    except Exception as exc:  # noqa: BLE001 - a missing connection is said, the commit stays
        raise GitError(str(exc)) from None
    url, login, password = _remote(str(connection.host or "").strip(), connection.login, connection.password)
    if not url:
        raise GitError(
            f"connection {conn_id!r} has no host: set it to the remote's URL (https://..., ssh://...)"
        )
    branch = _git(top, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise GitError("the spec folder's work tree has no branch checked out (detached HEAD)")
    helper = tempfile.mkdtemp(prefix="byo-git-askpass-")  # 0700: this process's user only
    try:
        env = _env()
        if login or password:
            script = Path(helper) / "askpass"
            script.write_text(_ASKPASS)
            script.chmod(0o700)
            env |= {"GIT_ASKPASS": str(script), "BYO_GIT_USERNAME": login, "BYO_GIT_PASSWORD": password}
        refspec = f"HEAD:refs/heads/{branch}"
        secrets = (password,) if len(password) >= 4 else ()
        _git(top, "push", "--quiet", url, refspec, env=env, timeout=PUSH_TIMEOUT_SECONDS, secrets=secrets)
    finally:
        shutil.rmtree(helper, ignore_errors=True)


def _remote(url: str, login: str | None, password: str | None) -> tuple[str, str, str]:
    """The remote's URL without ``user:password@`` (those go to the askpass helper), login, password."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, secret = userinfo.partition(":")
        login, password = login or unquote(user), password or unquote(secret)
        url = urlunsplit(parts._replace(netloc=host))
    return url, login or "", password or ""
