"""The application: config, wiring, CLI, API and dashboard."""
