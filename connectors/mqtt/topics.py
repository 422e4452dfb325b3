"""MQTT topic filters: what a broker accepts (MQTT 3.1.1 §4.7, the same in MQTT 5)."""
from __future__ import annotations


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
