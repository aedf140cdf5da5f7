"""Protocol decoders: what flows on top of WebSocket (see ``base`` for the shapes)."""
