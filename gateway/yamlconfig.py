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
import contextlib
import gc
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from edge.errors import ConfigError

log = logging.getLogger(__name__)

Loc = tuple[Any, ...]

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """libyaml's scanner, parser and composer (C) when PyYAML has them; the tag of every plain
    scalar is still resolved in Python, by regular expressions, so resolutions are memoised
    (a config repeats the same few words and numbers thousands of times)."""

    _resolved: dict[tuple[Any, Any, Any], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._resolved) < 100_000:
                self._resolved[key] = tag
        return tag


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
    nul = raw.find(b"\0")
    if nul >= 0:
        # Valid UTF-8 and GB18030 both, so it must be caught before them; YAML would only say
        # "special characters are not allowed".
        raise ConfigError(f"NUL byte at byte offset {nul}: UTF-16 without a byte order mark? "
                          "save the file as UTF-8", path=path)
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


_STR, _INT, _FLOAT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Builds the data and the line table in one walk over the node tree.

    Plain maps, lists and the scalar types a config uses are built here directly (PyYAML's
    generic constructor was a third of the load time); anything else (merge keys, timestamps,
    explicit tags) goes through the loader's own constructor, so the result is what
    `yaml.safe_load` gives, except that aliases become copies.
    """

    def __init__(self, loader: Any, path: str):
        self.loader = loader
        self.path = path
        self.lines: dict[Loc, int] = {}
        self._active: set[int] = set()  # collection nodes on the current path
        self._scalars = {_STR: lambda n: n.value, _INT: loader.construct_yaml_int,
                         _FLOAT: loader.construct_yaml_float, _BOOL: loader.construct_yaml_bool,
                         _NULL: lambda n: None}

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            raise ConfigError("an alias refers to a node that contains it (a recursive anchor)",
                              path=self.path, line=self.lines[loc])
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
                return items if node.tag == _SEQ else self._generic(node)
            return self._mapping(node, loc)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> Any:
        out: dict[Any, Any] = {}
        seen: dict[tuple[str, Any], int] = {}
        plain = node.tag == _MAP
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                key = f"(key at line {key_line})"  # a list or map as key: the loader refuses it
                plain = False
            elif key_node.tag == _MERGE:
                key = key_node.value
                plain = False
            else:
                key = key_node.value
                first = seen.get((key_node.tag, key))
                if first is not None:
                    raise ConfigError(f"duplicate key {key!r}: given at line {first} and again "
                                      f"at line {key_line}; keep one", path=self.path,
                                      line=key_line)
                seen[(key_node.tag, key)] = key_line
            value = self.build(value_node, loc + (key,))
            # A value's own line is where its key stands; more helpful for scalars.
            self.lines[loc + (key,)] = key_line
            if plain:
                out[self._scalar(key_node)] = value
        return out if plain else self._generic(node)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        make = self._scalars.get(node.tag)
        if make is None:
            return self._generic(node)
        try:
            return make(node)
        except ValueError as e:  # an explicit tag on a value it cannot be: `!!int abc`
            raise ConfigError(f"invalid YAML: {node.value!r} is not a {node.tag.rsplit(':', 1)[-1]}"
                              f" ({e})", path=self.path, line=node.start_mark.line + 1) from None

    def _generic(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as e:  # e.g. a bad !!timestamp, an unknown tag
            mark = e.problem_mark or e.context_mark
            raise ConfigError(f"invalid YAML: {e.problem}", path=self.path,
                              line=mark.line + 1 if mark else None) from None
        except TypeError as e:  # a list or map used as a key
            raise ConfigError(f"invalid YAML: {e}", path=self.path,
                              line=node.start_mark.line + 1) from None


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


def _compose(loader: Any, path: str) -> yaml.Node | None:
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(f"invalid YAML: {e.problem}", path=path, line=line) from None
    except yaml.YAMLError as e:  # libyaml reports a few reader errors without marks
        raise ConfigError(f"invalid YAML: {e}", path=path) from None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a document is built.

    Composing a big file creates hundreds of thousands of nodes and marks, none in a cycle; with
    the collector on, its full passes over the growing heap took 85 % of the load time of a
    1,000-device config (tests/bench/bench_config.py). The tree is freed by reference counting
    as soon as the data is built, so nothing is left for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml(path: str | Path, text: str | None = None) -> LocatedYaml:
    """Parse a YAML file once, raising ConfigError with the line for syntax errors and for keys
    given twice."""
    path = str(path)
    if text is None:
        text = read_config_text(path)
    loader = _Loader(text)
    with _gc_paused():
        try:
            node = _compose(loader, path)
            if node is None:
                return LocatedYaml({}, {(): 1}, path)
            builder = _Builder(loader, path)
            data = builder.build(node, ())
        finally:
            # Free the node tree while the collector is still paused, or its first pass after
            # the pause would walk every node once more.
            node = None
            loader.dispose()
    return LocatedYaml(data, builder.lines, path)


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
