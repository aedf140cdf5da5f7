"""The web UI (issue 15): the UI server, its shapes, and the breakpoints' pause engine."""
