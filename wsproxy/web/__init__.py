"""The web UI (``wsproxy-web``, issue 15): every WebSocket live; pause, edit, compose, close.

``live`` keeps what the page shows (a capture sink, bounded), ``server`` answers the page
(aiohttp: the REST API and the push channel), ``security`` holds the checks every request
passes, ``export`` writes captures of what is kept, ``breakpoints`` (and ``rules``) pause and
edit messages, ``shapes`` builds the JSON both sides share, ``cli`` starts it all.
"""
