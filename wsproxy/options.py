"""Every setting of a proxy run, in one frozen dataclass: the CLI fills it, the rest reads it.

Limits and their precedents: 64 MiB frames and messages (generous, because the proxy
stands in front of other people's applications and streams large frames without holding them;
websockets defaults to 1 MiB and aiohttp to 4 MiB for endpoints that buffer), 64 KiB heads with
at most 100 header lines and an 8 KiB request line (as nginx's large_client_header_buffers),
10 s for a handshake, 10 minutes of silence before an idle WebSocket is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wsproxy.modes import Listen, Mode, Regular, Reverse

if TYPE_CHECKING:
    from wsproxy.eventloop import LoopName

MiB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    # This listener: its address and mode. A run with several listeners (repeated --mode)
    # lists them all in ``listens``; the server gives each its own copy of these options
    # with the three fields above filled from its entry (``for_listen``).
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    mode: Mode = field(default_factory=Regular)
    listens: tuple[Listen, ...] = ()
    confdir: Path = field(default_factory=lambda: Path.home() / ".wsproxy")
    verbosity: int = 0  # -1 quiet, 0 normal, 1 frames, 2 debug
    preview_length: int = 40  # characters of payload in each -v frame line; 0: none
    # --view-filter: a filter expression (wsproxy.filters); -v prints only the frame lines of
    # messages it matches. None: every frame.
    view_filter: str | None = None
    # -v lines show each message decoded (wsproxy.decoders: Socket.IO, GraphQL, JSON-RPC,
    # JSON...) instead of its raw preview; --no-decode turns it off.
    decode: bool = True
    max_frame_size: int = 64 * MiB
    max_message_size: int = 64 * MiB
    max_head_size: int = 64 * 1024
    max_headers: int = 100
    max_request_line: int = 8192
    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0
    close_timeout: float = 5.0
    connect_timeout: float = 10.0
    # Idle upstream connections kept for plain HTTP (wsproxy.proxy.pool has the precedents):
    # per server (0: none kept, a new connection per request), in all, and for how long.
    pool_max_per_host: int = 6
    pool_max_idle: int = 100
    pool_idle_timeout: float = 30.0
    # RFC 6455 4.1: one handshake per (client, host, port) at a time, unless this is set.
    parallel_handshakes: bool = False
    max_connections: int = 10_000
    max_connections_per_client: int = 1_000
    # Who may use the proxy: loopback and private networks, plus these CIDRs (--allow-clients).
    allow_clients: tuple[str, ...] = ()
    # --proxy-protocol: every connection starts with a PROXY protocol v1/v2 header, accepted
    # from balancers on these networks only (--proxy-protocol-from; loopback by default).
    proxy_protocol: bool = False
    proxy_protocol_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    proxyauth: str | None = None  # "user:pass" for HTTP Basic proxy authentication
    # "user:pass" sent to the next proxy of an upstream-mode listener (--upstream-auth); kept
    # out of repr so that no printed Options shows it.
    upstream_auth: str | None = field(default=None, repr=False)
    upstream_ca: Path | None = None
    ssl_insecure: bool = False
    ignore_hosts: tuple[str, ...] = ()
    # Intercept only CONNECTs to host:port matching one of these, tunnel the rest untouched
    # (--allow-hosts; never together with ignore_hosts).
    allow_hosts: tuple[str, ...] = ()
    # --certs [DOMAIN=]FILE.pem: certificates served instead of generated leaves (tls.served).
    certs: tuple[str, ...] = ()
    # --no-websocket: after the 101, copy the bytes both ways untouched (no frames, no plugins).
    no_websocket: bool = False
    no_compression: bool = False
    # -w FILE (repeatable): record every WebSocket (and message) capture_filter matches, a
    # filter expression or a plain URL regex (wsproxy.filters.compile_url_filter), to each
    # .jsonl or .har file; see wsproxy.capture. fsync per batch only with capture_fsync
    # (power-loss safety).
    capture_paths: tuple[Path, ...] = ()
    capture_filter: str | None = None
    capture_fsync: bool = False
    # A capture writer behind the traffic: "wait" stops reading the captured connections until
    # it caught up (nothing lost), "drop" never slows the relay and drops records (a "lost"
    # record marks each gap). --capture-overflow.
    capture_overflow: Literal["wait", "drop"] = "wait"
    # Plain HTTP exchanges in the capture too: None = by format (HAR yes, JSONL no).
    capture_http: bool | None = None
    # --metrics-port: Prometheus metrics on this port (None: off; 0: any free port), at
    # metrics_host, asking for metrics_token (None: a random one, printed at start).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_token: str | None = field(default=None, repr=False)
    # In a worker of ``--workers N`` (wsproxy.workers): metrics served on this Unix socket
    # for the supervisor to scrape, instead of metrics_port.
    metrics_socket: Path | None = None
    # This process's worker tag ("w2"; "w2r1" once restarted) with ``--workers N``, else "":
    # connection ids start with it ("w2-c7"), listeners share their ports (SO_REUSEPORT) and
    # the supervisor, not the worker, prints the listening lines.
    worker: str = ""
    # --loop: the event loop (wsproxy.eventloop): uvloop when installed (auto), or asyncio's.
    event_loop: LoopName = "auto"

    @property
    def reverse(self) -> Reverse | None:
        """The fixed upstream of a reverse-mode listener."""
        return self.mode if isinstance(self.mode, Reverse) else None

    def all_listens(self) -> tuple[Listen, ...]:
        """Every listener of the run, host and port filled in."""
        return self.listens or (Listen(self.mode, self.listen_host, self.listen_port),)

    def for_listen(self, listen: Listen) -> Options:
        """These options as one listener sees them."""
        assert listen.host is not None and listen.port is not None
        return replace(
            self, mode=listen.mode, listen_host=listen.host, listen_port=listen.port, listens=()
        )
