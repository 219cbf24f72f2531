"""
What the rest of airflow-byo knows of an image: its pinned reference and, once unpacked, the root
file system a sandbox shows at ``/`` with the image's own ``Env`` and ``WorkingDir``.

Standard library only: the runner's sandbox modules import it, and they run without Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImageRoot"]


@dataclass(frozen=True)
class ImageRoot:
    """
    An unpacked image as a sandbox shows it (issue 25).

    :param reference: the image as the runtime names it (for messages).
    :param digest: the pinned digest (``sha256:<hex>``).
    :param root: host path of the unpacked root file system, shown read-only at ``/``.
    :param env: the image's ``Env``, in order; the child starts from these (never the worker's).
    :param workdir: the image's ``WorkingDir`` (``/`` when unset): the child's working directory.
    :param venv: host path of the flow's virtualenv built with the image's Python (bound at the same
        path), or ``None`` when the flow runs the image's interpreter as it is.
    :param in_use: a lock file every sandbox on the image holds shared, so ``prune`` leaves it be.
    """

    reference: str
    digest: str
    root: str
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"
    venv: str | None = None
    in_use: str | None = None

    def environment(self) -> dict[str, str]:
        """
        The child's environment: the image's ``Env`` over a default ``PATH`` and ``HOME``, with
        ``TMPDIR`` on the sandbox's private ``/tmp`` unless the image sets it.
        """
        env = {"PATH": DEFAULT_PATH, "HOME": "/tmp"}
        env.update(self.env)
        env.setdefault("TMPDIR", "/tmp")
        env.setdefault("MALLOC_ARENA_MAX", "2")  # a small address space under RLIMIT_AS, as for venvs
        return env


#: The PATH container runtimes give an image whose Env has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
