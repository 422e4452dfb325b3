"""YAML loading that remembers where every value came from, so a validation error can name the
file and the line (`gateway.yaml:14: devices[2].connection.port: ...`).

PyYAML's node marks are kept in a side table keyed by the path of keys/indexes to the value;
pydantic's error `loc` is the same kind of path, so the two meet without a custom model layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from edge.errors import ConfigError

Loc = tuple[Any, ...]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader; line numbers are collected separately by walking the node tree."""


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, loc + (key,), lines)
            # A value's own line is where its key stands; more helpful for scalars.
            lines[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), lines)


class LocatedYaml:
    """Parsed YAML data plus the line of every key and list item."""

    def __init__(self, data: Any, lines: dict[Loc, int], path: str):
        self.data = data
        self.lines = lines
        self.path = path

    def line_of(self, loc: Iterable[Any]) -> int | None:
        """The line of the deepest known prefix of `loc` (pydantic adds union tags we don't have)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())


def load_yaml(path: str | Path, text: str | None = None) -> LocatedYaml:
    """Parse a YAML file, raising ConfigError with the line for syntax errors."""
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", path=path) from None
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", path=path) from None
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(f"invalid YAML: {e.problem}", path=path, line=line) from None
    if node is None:
        return LocatedYaml({}, {(): 1}, path)
    lines: dict[Loc, int] = {}
    _walk(node, (), lines)
    data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    return LocatedYaml(data, lines, path)


def format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _explain(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = err.get("msg", "invalid value")
    if "input" in err and kind not in ("model_type", "dict_type"):
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{msg} (got {shown})"
    return msg


def validation_error(doc: LocatedYaml, exc: ValidationError, prefix: Loc = ()) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError listing every problem with its line."""
    problems = []
    first_line = None
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
        line = doc.line_of(loc)
        first_line = first_line or line
        where = f"line {line}: " if line else ""
        problems.append(f"{where}{format_loc(loc)}: {_explain(err)}")
    if len(problems) == 1:
        return ConfigError(problems[0].split(": ", 1)[1] if first_line else problems[0],
                           path=doc.path, line=first_line)
    return ConfigError(f"{len(problems)} problems:\n  " + "\n  ".join(problems), path=doc.path)


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the chosen class/function name into loc for unions and validators.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def validate(doc: LocatedYaml, model: type[BaseModel], data: Any = None, prefix: Loc = ()) -> Any:
    try:
        return model.model_validate(doc.data if data is None else data)
    except ValidationError as e:
        raise validation_error(doc, e, prefix) from None
