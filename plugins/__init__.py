"""wsproxy's bundled plugins, one small file each: ``log``, ``rewrite``, ``block``, ``fault``.

Installed, this directory is the package ``wsproxy_plugins`` (``wsproxy -s log``); from a
checkout each file also loads by path (``wsproxy -s plugins/log.py``), so no module here imports
another: each is self-contained, using only the standard library and ``wsproxy``.
"""
