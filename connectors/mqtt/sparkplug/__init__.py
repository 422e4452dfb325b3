"""Sparkplug B (Eclipse Sparkplug 3.0) for the MQTT connector: the payload codec (wire.py,
codec.py, from sparkplug_b.proto beside it), topics (topic.py), and the host application's view
of edge node sessions (session.py)."""
