"""
Custom Python packages of a flow: the seed's ``"p1==1.0.1,p2==0.0.2"`` string or a list.

Every entry must be a PEP 508 requirement. Anything that would make the installer do more than
install a named distribution -- pip options, requirement files, editable or local paths, shell
syntax, direct URLs (unless the flow allows them) -- is rejected with the entry named.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from airflow_byo.exceptions import ByoPackageError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["parse_packages"]

_SHELL_CHARS = re.compile(r"[`$|&\\\n\r\t]|\$\(")
_SINGLE_EQUALS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=([^=<>!~].*)$")
_VERSION_OPERATOR_START = ("<", ">", "=", "!", "~")


def _split_string(spec: str) -> list[str]:
    """Split on commas, keeping ``pandas>=2,<3`` together (a chunk starting with an operator)."""
    entries: list[str] = []
    for chunk in spec.split(","):
        chunk = chunk.strip()
        if entries and chunk.startswith(_VERSION_OPERATOR_START):
            entries[-1] = f"{entries[-1]},{chunk}"
        else:
            entries.append(chunk)
    return entries


def _reject(entry: str, why: str, fix: str) -> ByoPackageError:
    return ByoPackageError(f"packages: entry {entry!r} is not allowed: {why}. {fix}")


def _check_entry(entry: str, allow_direct_urls: bool) -> Requirement:
    if not entry:
        raise ByoPackageError(
            "packages: empty entry (two commas in a row, or a trailing comma?). "
            "Write packages as 'p1==1.0.1,p2==0.0.2'"
        )
    if entry.startswith("-"):
        raise _reject(
            entry,
            "pip options (--index-url, -e, -r, ...) cannot be given as packages",
            "List only distributions such as 'pandas==2.2.2'; configure package indexes in the "
            "deployment (e.g. uv/pip configuration) instead",
        )
    if _SHELL_CHARS.search(entry):
        raise _reject(entry, "it contains shell syntax", "Use a plain requirement like 'requests>=2.31'")
    if entry.startswith((".", "/", "~")) or entry.lower().startswith("file:"):
        raise _reject(
            entry,
            "local paths cannot be installed into a flow's environment",
            "Publish the package to an index and pin it, e.g. 'mypkg==1.2.0'",
        )
    try:
        requirement = Requirement(entry)
    except InvalidRequirement as exc:
        single = _SINGLE_EQUALS.match(entry)
        hint = (
            f"Did you mean '{single.group(1)}=={single.group(2)}'? Versions are pinned with '=='"
            if single
            else "Use PEP 508 form, e.g. 'pandas==2.2.2' or 'requests>=2.31,<3'"
        )
        reason = str(exc).splitlines()[0]  # packaging adds a caret diagram on further lines
        raise ByoPackageError(
            f"packages: entry {entry!r} is not a valid requirement ({reason}). {hint}"
        ) from None
    if requirement.url:
        if requirement.url.lower().startswith("file:"):
            raise _reject(
                entry,
                "local paths cannot be installed into a flow's environment",
                "Publish the package to an index and pin it, e.g. 'mypkg==1.2.0'",
            )
        if not allow_direct_urls:
            raise _reject(
                entry,
                "direct URLs are off by default (they bypass version pinning and the index)",
                "Pin a released version instead, or pass allow_direct_urls=True to the operator",
            )
    return requirement


def parse_packages(packages: str | Iterable[str] | None, *, allow_direct_urls: bool = False) -> list[str]:
    """
    Validate a flow's packages and return them as normalised requirement strings, sorted.

    :raises ByoPackageError: naming the offending entry and how to write it.
    """
    if packages is None:
        return []
    if isinstance(packages, str):
        entries = _split_string(packages) if packages.strip() else []
    else:
        entries = []
        for item in packages:
            if not isinstance(item, str):
                raise ByoPackageError(f"packages: entry {item!r} must be a string like 'pandas==2.2.2'")
            entries.append(item.strip())
    seen: dict[str, str] = {}
    result = []
    for entry in entries:
        requirement = _check_entry(entry, allow_direct_urls)
        name = canonicalize_name(requirement.name)
        if name in seen:
            raise ByoPackageError(
                f"packages: {requirement.name!r} is listed twice ({seen[name]!r} and {entry!r}); "
                "keep one entry per package"
            )
        seen[name] = entry
        result.append(str(requirement))
    return sorted(result)
