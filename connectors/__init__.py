"""Southbound protocol plugins behind one interface (connectors.base)."""
