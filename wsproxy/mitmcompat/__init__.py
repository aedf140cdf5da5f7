"""mitmproxy WebSocket addons, run unchanged by wsproxy (``wsproxy -s addon.py``).

A script written for mitmproxy's WebSocket hooks loads like any wsproxy script; every object
in it that has a mitmproxy event hook or ``load(loader)`` (and no wsproxy hook) is wrapped in a
``MitmAddon`` that translates between the two (``wsproxy.mitmcompat.addon``). The script's
module counts as one such object; ``addons = [...]`` lists more.

What is covered of mitmproxy's API (11.x), exactly:

* events: ``requestheaders(flow)`` and ``request(flow)`` (the upgrade request),
  ``responseheaders(flow)`` and ``response(flow)`` (the 101 answer), ``websocket_start(flow)``,
  ``websocket_message(flow)``, ``websocket_end(flow)``; plain or ``async``.
* lifecycle: ``load(loader)`` with ``loader.add_option(name, typespec, default, help,
  choices=None)`` (typespec ``bool``, ``int``, ``float``, ``str``, ``Optional[...]`` of those,
  ``Sequence[str]``; ``--set`` sets them) and ``loader.add_command`` (ignored);
  ``configure(updated)`` (the set of option names, at load and after each reload);
  ``running()``; ``done()`` (at shutdown, and on the old version when a script reloads).
* ``flow`` (``http.HTTPFlow``): ``id``, ``metadata`` (a dict shared by every addon, kept for the
  flow's life), ``live``, ``error`` (``.msg``), ``timestamp_created``, ``timestamp_start``,
  ``get_state()``, ``set_state(state)``, ``killable``,
  ``kill()`` (handshake: answer 403; open: close both sides with 1001), ``client_conn.peername``
  (and ``.address``), ``server_conn.address`` (and ``.peername``, ``.sni``,
  ``.tls_established``).
* ``flow.request``: ``host``, ``port``, ``path``, ``scheme`` (``http``/``https``), all
  settable (they change where the upgrade goes; setting host or port updates the Host header),
  ``method``, ``http_version``, ``url``, ``pretty_url``, ``pretty_host``, ``host_header``,
  ``authority``, ``headers``.
* ``flow.response`` (from ``response`` on): ``status_code``, ``reason``, ``http_version``,
  ``headers``.
* headers: case-insensitive ``h[name]`` (several fields joined with ", "), ``h[name] = v``,
  ``del h[name]``, ``in``, ``get``, iteration, ``len``, ``get_all``, ``set_all``, ``add``, and
  the rest of ``MutableMapping``; changes reach the upstream request (or the client's 101).
* ``flow.websocket`` (``None`` in ``request``, as in mitmproxy): ``messages`` (the last 100 of
  the flow: see ``MAX_MESSAGES``), ``close_code``, ``close_reason``, ``closed_by_client``,
  ``timestamp_end`` (set for ``websocket_end``).
* a message (``websocket.WebSocketMessage``): ``content`` (bytes, settable), ``text`` (settable;
  text messages only), ``from_client``, ``is_text``, ``type`` (an ``IntEnum`` with ``.name``:
  TEXT or BINARY), ``timestamp``, ``drop()`` (and the older ``kill()``), ``dropped``,
  ``injected``.
* ``ctx.log.debug/info/alert/warn/warning/error``, ``ctx.options.NAME``,
  ``ctx.master.commands.call("inject.websocket", flow, to_client, message, is_text=True)``;
  ``from mitmproxy import ctx, http, websocket, addonmanager, exceptions`` without mitmproxy
  installed (``wsproxy.mitmcompat.shim``).

Not covered: other commands, other events (``tcp_*``, ``dns_*``, ``client_connected`` ...),
intercept/resume, ``flow.request.query``/bodies of plain HTTP exchanges (wsproxy relays them
without hooks), and the ``@concurrent`` decorator.

As in mitmproxy, ``websocket_message`` runs in every addon for injected messages
(``injected``) and for messages an earlier addon dropped (``dropped``); ``flow.get_state()``
and ``flow.set_state()`` are in ``wsproxy.mitmcompat.state``.
"""

from __future__ import annotations

from wsproxy.mitmcompat.addon import MITM_EVENTS, Loader, MitmAddon, is_mitm_style, is_native
from wsproxy.mitmcompat.flow import MAX_MESSAGES, HTTPFlow
from wsproxy.mitmcompat.shim import install, register_real_classes

__all__ = [
    "MAX_MESSAGES",
    "MITM_EVENTS",
    "HTTPFlow",
    "Loader",
    "MitmAddon",
    "install",
    "is_mitm_style",
    "is_native",
    "register_real_classes",
]
