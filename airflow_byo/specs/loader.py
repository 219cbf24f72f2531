"""
Read flow spec files (YAML or JSON) into :class:`FlowSpec`, with errors that name file, line and field.

This is the one reader of spec files: the DAG factory, ``airflow byo validate``,
``airflow byo test --spec`` (and any UI) all come through :func:`read_spec`, so they cannot
disagree about a file. Reading is bounded, because one careless or hostile file in a folder of
200 flows must cost milliseconds, not the dag-processor's memory
(https://github.com/airflow-byo/airflow-byo/issues/14):

- a file over ``[byo] max_spec_bytes`` (default 1 MiB) is refused from its ``stat``, unread;
- YAML aliases are refused before anything is built from the document, so an alias bomb
  ("billion laughs") never expands; only plain YAML tags pass (no ``!!python/...``, no custom
  tags), duplicate keys are an error, nesting is limited to :data:`MAX_DEPTH` levels;
- non-UTF-8 bytes, an empty file and a document that is not a mapping each get their own message.
"""

from __future__ import annotations

import difflib
import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_byo.exceptions import ByoConfigError, ByoFlowSpecError
from airflow_byo.specs.model import FlowSpec

__all__ = [
    "DEFAULT_MAX_SPEC_BYTES",
    "MAX_DEPTH",
    "SPEC_SUFFIXES",
    "SpecDocument",
    "find_specs",
    "fingerprint",
    "load_spec",
    "max_spec_bytes",
    "parse_spec",
    "read_spec",
]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_MAX_SPEC_BYTES = 1024 * 1024
#: Deeper nesting is refused: no flow spec needs it, and deep documents are slow to build.
MAX_DEPTH = 32

#: libyaml's loader when PyYAML has it (several times faster: specs are parsed on every DAG parse).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map", "merge")
)
_SHAPE = "a mapping with name, source, processing and destination"


def find_specs(folder: str | Path) -> list[Path]:
    """
    The spec files of a folder (recursively), sorted. Hidden files and folders (a name starting
    with ``.``, below ``folder``) are not specs: the flow editor keeps its history in
    ``.byo-history/`` and its temporaries as ``.byo-*`` files, and git keeps ``.git/``.
    """
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in SPEC_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )


def max_spec_bytes() -> int:
    """``[byo] max_spec_bytes``: spec files larger than this are refused unread."""
    from airflow_byo.provider_config import setting

    raw = setting("max_spec_bytes").strip()
    if not raw:
        return DEFAULT_MAX_SPEC_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ByoConfigError(
            f"[byo] max_spec_bytes must be a positive number of bytes, got {raw!r}. "
            f"Fix: set it to e.g. {DEFAULT_MAX_SPEC_BYTES} (AIRFLOW__BYO__MAX_SPEC_BYTES)"
        )
    return value


@dataclass(frozen=True)
class SpecDocument:
    """A spec file's data, with its YAML node tree for line numbers."""

    path: Path
    data: dict[str, Any]
    node: yaml.MappingNode
    #: ``<bytes>:<sha256>`` of exactly the bytes read (see :func:`fingerprint`)
    fingerprint: str = ""

    def line(self, loc: tuple[Any, ...]) -> int:
        """The 1-based line of the value at ``loc`` (or of its nearest existing parent)."""
        return _line_of(self.node, loc)

    def value_node(self, loc: tuple[Any, ...]) -> yaml.Node | None:
        """The node of the value at ``loc``, or None when it is not in the file."""
        node: yaml.Node | None = self.node
        for key in loc:
            node = _child(node, key)
            if node is None:
                return None
        return node

    def error(self, loc: tuple[Any, ...], problem: str, fix: str = "", line: int | None = None) -> str:
        """``<file>:<line>: <field.path>: <problem>. Fix: <fix>`` for the value at ``loc``."""
        return _message(self.path, line or self.line(loc), loc, problem, fix)


def fingerprint(raw: bytes) -> str:
    """
    ``<size>:<sha256 hex>`` of a spec file's bytes: what a spec's generated DAG file compares to
    tell a spec the factory found valid from a changed one (:mod:`airflow_byo.specs.error_report`).
    """
    return f"{len(raw)}:{hashlib.sha256(raw).hexdigest()}"


def _message(path: Path, line: int | None, loc: tuple[Any, ...] | str, problem: str, fix: str = "") -> str:
    where = f"{path}:{line}" if line else str(path)
    field = loc if isinstance(loc, str) else ".".join(str(part) for part in loc) or "(spec)"
    problem = problem.rstrip(". ")
    return f"{where}: {field}: {problem}" + (f". Fix: {fix}" if fix else "")


def _child(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        node = _child(node, key)
        if node is None:  # a missing field: point at its parent
            return line
        line = node.start_mark.line + 1
    return line


def _read_bounded(path: Path, limit: int) -> bytes:
    """The file's bytes, refused from its ``stat`` (unread) when it is over ``limit``."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ByoFlowSpecError(
                _message(path, None, "(file)", "not a regular file", "give a .yaml/.json file")
            )
        if info.st_size > limit:
            raise ByoFlowSpecError(_too_large(path, f"{info.st_size:,} bytes", limit))
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)  # never more than the limit, even if it grew since stat
    except OSError as exc:
        raise ByoFlowSpecError(
            _message(
                path, None, "(file)", f"cannot be read: {exc.strerror}", "check the path and its permissions"
            )
        ) from None
    if len(raw) > limit:
        raise ByoFlowSpecError(_too_large(path, "more bytes", limit))
    return raw


def _too_large(path: Path, size: str, limit: int) -> str:
    return _message(
        path,
        None,
        "(file)",
        f"{size} is over [byo] max_spec_bytes ({limit:,} bytes), so the file was not read",
        "a flow spec is a few KB: keep data and long code out of it (use `function:` or `reference:`), "
        "or raise [byo] max_spec_bytes",
    )


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ByoFlowSpecError(
            _message(
                path,
                line,
                "(file)",
                f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column} cannot be decoded",
                "save the file as UTF-8",
            )
        ) from None
    return text.removeprefix("\ufeff")


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "null"
    return f"a single value ({node.value[:40]!r})"


def _check_tree(path: Path, root: yaml.Node) -> None:
    """Refuse aliases, non-plain tags, duplicate keys and deep nesting, before anything is built."""
    seen: set[int] = set()
    # node, its field path, depth, the line it was reached from (an alias shares its anchor's marks)
    stack: list[tuple[yaml.Node, tuple[Any, ...], int, int]] = [(root, (), 0, root.start_mark.line + 1)]
    while stack:
        node, loc, depth, line = stack.pop()
        if id(node) in seen:
            raise ByoFlowSpecError(
                _message(
                    path,
                    line,
                    loc,
                    "YAML aliases (*name) are not allowed in flow specs: an alias can expand a few "
                    "hundred bytes into gigabytes",
                    "write the value out in full (and drop its &anchor)",
                )
            )
        seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            raise ByoFlowSpecError(
                _message(
                    path,
                    node.start_mark.line + 1,
                    loc,
                    f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed: flow specs "
                    "hold plain YAML (mappings, lists, strings, numbers, booleans, null)",
                    "remove the tag",
                )
            )
        if depth > MAX_DEPTH:
            raise ByoFlowSpecError(
                _message(path, line, loc, f"nested more than {MAX_DEPTH} levels deep", "flatten it")
            )
        children: list[tuple[yaml.Node, tuple[Any, ...], int, int]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, Any], int] = {}
            for key, value in node.value:
                key_line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and not key.tag.endswith(":merge"):
                    if (key.tag, key.value) in first:
                        raise ByoFlowSpecError(
                            _message(
                                path,
                                key_line,
                                (*loc, key.value),
                                f"duplicate key (first given on line {first[key.tag, key.value]})",
                                "keep one of them",
                            )
                        )
                    first[key.tag, key.value] = key_line
                children.append((key, loc, depth + 1, key_line))
                children.append((value, (*loc, key.value), depth + 1, key_line))
        elif isinstance(node, yaml.SequenceNode):
            children = [
                (item, (*loc, index), depth + 1, node.start_mark.line + 1)
                for index, item in enumerate(node.value)
            ]
        stack.extend(reversed(children))  # in document order: the first alias is the one reported


def read_spec(path: str | Path, *, max_bytes: int | None = None) -> SpecDocument:
    """
    Read one spec file, bounded: size, encoding, YAML syntax, aliases, tags, duplicate keys, shape.

    :param max_bytes: the size limit (default ``[byo] max_spec_bytes``).
    :raises ByoFlowSpecError: one message naming the file (and line when there is one).
    """
    path = Path(path)
    raw = _read_bounded(path, max_bytes or max_spec_bytes())
    text = _decode(path, raw)
    loader = _LOADER(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                raise ByoFlowSpecError(
                    _message(
                        path,
                        1,
                        "(document)",
                        "the file is empty (or only comments)",
                        f"write a flow spec: {_SHAPE}",
                    )
                )
            if not isinstance(node, yaml.MappingNode):
                raise ByoFlowSpecError(
                    _message(
                        path,
                        node.start_mark.line + 1,
                        "(document)",
                        f"the document is {_kind(node)}, not a mapping",
                        f"a flow spec is {_SHAPE}",
                    )
                )
            _check_tree(path, node)
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            said = [getattr(exc, "context", None), getattr(exc, "problem", None)]
            problem = " ".join(part for part in said if part) or str(exc)  # "while ... found ..."
            raise ByoFlowSpecError(
                _message(
                    path,
                    mark.line + 1 if mark is not None else None,
                    "(document)",
                    f"not valid YAML/JSON: {problem}",
                    "correct the syntax at that line",
                )
            ) from None
        except RecursionError:
            raise ByoFlowSpecError(
                _message(path, None, "(document)", f"nested more than {MAX_DEPTH} levels deep", "flatten it")
            ) from None
    finally:
        loader.dispose()
    return SpecDocument(path=path, data=data, node=node, fingerprint=fingerprint(raw))


def _fix_for(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        field = str(error["loc"][-1])
        model = FlowSpec
        for part in error["loc"][:-1]:
            annotation = model.model_fields.get(str(part))
            inner = getattr(annotation, "annotation", None) if annotation else None
            model = next(
                (a for a in getattr(inner, "__args__", (inner,)) if hasattr(a, "model_fields")), None
            )  # type: ignore[assignment]
            if model is None:
                return "remove it"
        close = difflib.get_close_matches(field, list(model.model_fields), n=1)
        return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(model.model_fields)}"
    if error["type"] == "missing":
        return "add it"
    return ""


def parse_spec(path: str | Path, *, max_bytes: int | None = None) -> tuple[SpecDocument, FlowSpec]:
    """Read and validate one spec file; the document is kept for line numbers of later checks."""
    document = read_spec(path, max_bytes=max_bytes)
    try:
        return document, FlowSpec.model_validate(document.data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            lines.append(document.error(loc, error["msg"].removeprefix("Value error, "), _fix_for(error)))
        raise ByoFlowSpecError("\n".join(lines)) from None


def load_spec(path: str | Path) -> FlowSpec:
    """
    Parse and validate one spec file (the model only; :func:`airflow_byo.specs.factory.load_flow`
    also checks what the factory meets when building the DAG).

    :raises ByoFlowSpecError: ``<file>:<line>: <field.path>: <problem>. Fix: <fix>`` for every problem.
    """
    return parse_spec(path)[1]
