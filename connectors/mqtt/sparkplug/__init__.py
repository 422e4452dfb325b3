"""Sparkplug B (Eclipse Sparkplug 3.0) for the MQTT connector: the payload codec (wire.py,
codec.py, from sparkplug_b.proto beside it), topics (topic.py), and the host application's view
of edge node sessions (session.py)."""

# Importing the package registers the "sparkplug" route kind (connectors.mqtt.routing imports
# it on first use of `payload_format: sparkplug`).
from . import route as _route  # noqa: E402,F401
