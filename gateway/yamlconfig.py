"""YAML loading that remembers where every value came from, so a validation error can name the
file and the line (`gateway.yaml:14: devices[2].connection.port: ...`).

The file is parsed once: libyaml (when PyYAML has it) composes the node tree, the marks of that
tree go into a side table keyed by the path of keys/indexes to each value, and the data is
constructed from the same tree. pydantic's error `loc` is the same kind of path, so the two meet
without a custom model layer. A key given twice in one mapping is refused with both lines
(plain YAML loaders silently keep the last one).

Config files come from Windows PCs as often as from Linux ones, so the bytes are decoded as
UTF-8 (with or without BOM), UTF-16 with a BOM, or else GB18030 (a superset of GBK/GB2312, what
Chinese Windows editors save as "ANSI"); anything else is refused with the byte offset.
"""
from __future__ import annotations

import codecs
import logging
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from edge.errors import ConfigError

log = logging.getLogger(__name__)

Loc = tuple[Any, ...]

# libyaml's scanner, parser and composer are C; construction stays Python (SafeConstructor).
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def decode_config(raw: bytes, path: str) -> str:
    """The text of a config file, from whichever encoding a user's editor is likely to use."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError as e:
                raise ConfigError(f"starts with a {codec.upper()} byte order mark but byte "
                                  f"offset {e.start} is not {codec.upper()} ({e.reason}); "
                                  "save the file as UTF-8", path=path) from None
            log.debug("%s: read as %s (byte order mark)", path, codec)
            return text
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        try:
            text = raw.decode("gb18030")
        except UnicodeDecodeError:
            bad = raw[utf8_error.start:utf8_error.start + 4].hex(" ")
            raise ConfigError(
                f"neither UTF-8 nor GB18030/GBK: byte offset {utf8_error.start} (bytes {bad}) is "
                "not valid UTF-8; save the file as UTF-8", path=path) from None
        log.info("%s: not UTF-8, read as GB18030 (GBK); saving it as UTF-8 avoids the guess",
                 path)
        return text
    log.debug("%s: read as UTF-8", path)
    return text


def read_config_text(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", path=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=path) from None
    return decode_config(raw, path)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: str,
          above: frozenset[int] = frozenset()) -> None:
    lines[loc] = node.start_mark.line + 1
    if id(node) in above:
        raise ConfigError("an alias refers to a node that contains it (a recursive anchor)",
                          path=path, line=lines[loc])
    above = above | {id(node)} if isinstance(node, yaml.CollectionNode) else above
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, Any], int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            key_line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                first = seen.get((key_node.tag, key))
                if first is None:
                    seen[(key_node.tag, key)] = key_line
                else:
                    raise ConfigError(f"duplicate key {key!r}: given at line {first} and again "
                                      f"at line {key_line}; keep one", path=path, line=key_line)
            _walk(value_node, loc + (key,), lines, path, above)
            # A value's own line is where its key stands; more helpful for scalars.
            lines[loc + (key,)] = key_line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), lines, path, above)


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
    """Parse a YAML file once, raising ConfigError with the line for syntax errors and for keys
    given twice."""
    path = str(path)
    if text is None:
        text = read_config_text(path)
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            line = e.problem_mark.line + 1 if e.problem_mark else None
            raise ConfigError(f"invalid YAML: {e.problem}", path=path, line=line) from None
        except yaml.YAMLError as e:  # libyaml reports a few reader errors without marks
            raise ConfigError(f"invalid YAML: {e}", path=path) from None
        if node is None:
            return LocatedYaml({}, {(): 1}, path)
        lines: dict[Loc, int] = {}
        _walk(node, (), lines, path)
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as e:  # e.g. a bad !!timestamp, an unknown tag
            mark = e.problem_mark or e.context_mark
            raise ConfigError(f"invalid YAML: {e.problem}", path=path,
                              line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
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
