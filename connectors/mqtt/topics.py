"""MQTT topic filters: what a broker accepts (MQTT 3.1.1 §4.7, the same in MQTT 5)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping


def topic_filter_problem(topic: str) -> str | None:
    """Why `topic` is not a valid MQTT topic filter (MQTT 3.1.1 §4.7), or None."""
    if not topic:
        return "a topic filter cannot be empty"
    if "\0" in topic:
        return "a topic filter cannot contain a NUL character"
    if len(topic.encode("utf-8")) > 65535:
        return "a topic filter is at most 65,535 bytes"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one (e.g. plant/line1/#)"
        if "+" in level and level != "+":
            return "'+' must be a whole level (e.g. plant/+/telemetry)"
    return None


_FIELD = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class TopicTemplate:
    """A topic filter whose `{name}` levels bind fields: `factory/{line}/{device}/telemetry`
    subscribes `factory/+/+/telemetry` and binds `line` and `device` from a message's topic."""

    text: str
    filter: str
    fields: tuple[tuple[int, str], ...]   # (level index, field name)

    @classmethod
    def parse(cls, text: str) -> "TopicTemplate":
        levels = text.split("/")
        fields: list[tuple[int, str]] = []
        for i, level in enumerate(levels):
            m = _FIELD.match(level)
            if m:
                if any(name == m.group(1) for _, name in fields):
                    raise ValueError(f"{text!r}: field {{{m.group(1)}}} appears twice")
                fields.append((i, m.group(1)))
                levels[i] = "+"
            elif "{" in level or "}" in level:
                raise ValueError(f"{text!r}: a template field is a whole level named like "
                                 f"{{device}} (letters, digits, '_'), got {level!r}")
        flt = "/".join(levels)
        problem = topic_filter_problem(flt)
        if problem:
            raise ValueError(f"{text!r} is not a valid MQTT topic filter: {problem}")
        return cls(text, flt, tuple(fields))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.fields)

    def bind(self, topic: str) -> dict[str, str] | None:
        """The fields bound by `topic`, or None when it does not match the filter."""
        if not topic_matches(self.filter, topic):
            return None
        levels = topic.split("/")
        return {name: levels[i] for i, name in self.fields}

    def fill(self, values: Mapping[str, str]) -> str:
        """The topic (or filter, for fields not given) with `values` filled in."""
        levels = self.text.split("/")
        for i, name in self.fields:
            levels[i] = values.get(name, "+")
        return "/".join(levels)


def topic_matches(flt: str, topic: str) -> bool:
    """MQTT matching of a topic name against a filter (MQTT 3.1.1 §4.7), without paho."""
    f_levels, t_levels = flt.split("/"), topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False    # $SYS and the like never match a leading wildcard (§4.7.2)
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(t_levels) == len(f_levels)
