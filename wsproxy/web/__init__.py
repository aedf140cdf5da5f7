"""The web UI (``wsproxy-web``): every WebSocket live in a browser; pause, edit, compose, close.

``live`` keeps what the page shows (a capture sink, bounded), ``server`` answers the page
(aiohttp: the REST API and the push channel), ``security`` holds the checks every request
passes, ``export`` writes captures of what is kept, ``cli`` starts it all beside the proxy.
"""
