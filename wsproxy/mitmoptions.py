"""mitmproxy's core options on wsproxy's command line, so a mitmproxy user changes only the
command name.

``--set NAME[=VALUE]`` with one of mitmproxy's own option names, and mitmproxy's dedicated
flags that wsproxy does not define itself (``--anticache``, ``--no-http2``, ``--tcp-hosts
REGEX``, ``-m MODE``...), are rewritten into wsproxy's flags before argparse reads the command
line (``translate``). The tables below are the one place that knows mitmproxy's names: which
wsproxy flags a value becomes (``MAPPED``), which values ask for what wsproxy does anyway
(``ALREADY``: accepted, with a log line saying so), and why the rest is not supported and what
to use instead (``UNSUPPORTED``: ``ConfigError``, exit status 2, one line). Any other
``--set`` name is a plugin option and is left for ``wsproxy.scripts`` to check.

Values are read as mitmproxy reads them: a boolean is ``true``/``false`` (also 1/0, yes/no,
on/off, as wsproxy's plugin options), ``toggle`` flips it, and no value means true; a list
option appends one item per ``--set``; a string or number given no value keeps the default.
Repeating a single-valued option keeps the last value, as repeating a flag does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from wsproxy.exceptions import ConfigError

__all__ = ["CoreOption", "Translation", "lookup", "names", "translate"]

Kind = Literal["bool", "str", "int", "list"]
Value = bool | int | str | None
Apply = Callable[[Value], list[str]]  # a value -> wsproxy's flags

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Unsupported(Exception):
    """A value wsproxy cannot honour; the message says why and what to use instead."""


class Already(Exception):
    """A value that asks for what wsproxy does anyway; the message says so (logged)."""


@dataclass(frozen=True)
class CoreOption:
    """One of mitmproxy's option names and what it means for wsproxy."""

    name: str
    kind: Kind
    apply: Apply
    wsproxy: str  # what wsproxy does with it, in a few words (the README's table)
    default: bool = False  # a boolean's default in mitmproxy, for ``toggle``


@dataclass
class Translation:
    """The command line in wsproxy's flags, and the notes to log once logging is set up."""

    argv: list[str]
    notes: list[str] = field(default_factory=list)


# -- what a value becomes ----------------------------------------------------------------------


def _to(flag: str) -> Apply:
    """A value (or one list item) becomes ``flag=VALUE``; no value keeps wsproxy's default."""
    return lambda value: [] if value is None else [f"{flag}={value}"]


def _switch(when_true: Sequence[str], when_false: Sequence[str] = ()) -> Apply:
    return lambda value: list(when_true if value else when_false)


def _verbosity(value: Value) -> list[str]:
    levels = {"error": ["-q"], "warn": ["-q"], "alert": ["-q"], "info": [], "debug": ["-v", "-v"]}
    if value not in levels:
        raise ValueError("not a level: use error, warn, alert, info or debug")
    return levels[str(value)]


def _flow_detail(value: Value) -> list[str]:
    if not isinstance(value, int) or not 0 <= value <= 4:
        raise ValueError("not a detail level: use 0 to 4")
    return ["-q"] if value == 0 else ["-v"] if value >= 3 else []


def _save_stream_file(value: Value) -> list[str]:
    text = str(value or "")
    if text.startswith("+"):
        raise Unsupported("appending (+FILE); -w FILE writes FILE anew")
    if "%" in text:
        raise Unsupported("strftime patterns in the file name; -w FILE names one file")
    return _to("--capture")(value)


def _hardump(value: Value) -> list[str]:
    if value and not str(value).lower().endswith(".har"):
        raise ValueError("the file must end in .har")
    return _to("--capture")(value or None)


# -- the tables --------------------------------------------------------------------------------

# Options that become wsproxy flags: name -> (kind, what a value becomes, the README's words).
MAPPED: dict[str, tuple[Kind, Apply, str]] = {
    "listen_host": ("str", _to("--listen-host"), "--listen-host"),
    "listen_port": ("int", _to("--listen-port"), "-p/--listen-port"),
    "mode": ("list", _to("--mode"), "--mode (each one more listener)"),
    "confdir": ("str", _to("--confdir"), "--confdir"),
    "ignore_hosts": ("list", _to("--ignore-hosts"), "--ignore-hosts (appends)"),
    "allow_hosts": ("list", _to("--allow-hosts"), "--allow-hosts (appends)"),
    "certs": ("list", _to("--certs"), "--certs [DOMAIN=]FILE.pem (appends)"),
    "websocket": ("bool", _switch([], ["--no-websocket"]), "false: --no-websocket"),
    "proxyauth": ("str", _to("--proxyauth"), "--proxyauth USER:PASS"),
    "upstream_auth": ("str", _to("--upstream-auth"), "--upstream-auth USER:PASS"),
    "block_global": (
        "bool",
        _switch([], ["--allow-clients=0.0.0.0/0", "--allow-clients=::/0"]),
        "true: the default (loopback and private clients only); false: --allow-clients "
        "0.0.0.0/0 --allow-clients ::/0",
    ),
    "ssl_insecure": ("bool", _switch(["--ssl-insecure"]), "-k/--ssl-insecure"),
    "ssl_verify_upstream_trusted_ca": ("str", _to("--upstream-ca"), "--upstream-ca"),
    "ssl_verify_upstream_trusted_confdir": (
        "str",
        _to("--upstream-ca"),
        "--upstream-ca (takes a c_rehash directory too)",
    ),
    "anticomp": (
        "bool",
        _switch(["--no-compression"]),
        "true: --no-compression (no permessage-deflate; HTTP bodies pass as they are)",
    ),
    "termlog_verbosity": (
        "str",
        _verbosity,
        "error, warn, alert: -q; info: the default; debug: -vv",
    ),
    "flow_detail": ("int", _flow_detail, "0: -q; 1, 2: the default; 3, 4: -v"),
    "proxy_debug": ("bool", _switch(["-v", "-v"]), "true: -vv"),
    "save_stream_file": ("str", _save_stream_file, "-w FILE (.jsonl, .har or .mitm)"),
    "hardump": ("str", _hardump, "-w FILE.har"),
    "scripts": ("list", _to("--script"), "-s (appends)"),
}

_HTTP11 = "wsproxy speaks HTTP/1.1 only (a WebSocket upgrade is HTTP/1.1; ALPN offers http/1.1)"
_TLS = "wsproxy accepts TLS 1.2 and 1.3 on both legs"

# Options whose listed values ask for what wsproxy does anyway: accepted, and the note logged;
# other values are refused with it. name -> (kind, the values, what wsproxy does). ``...``
# stands for any value.
ALREADY: dict[str, tuple[Kind, tuple[object, ...], str]] = {
    "upstream_cert": (
        "bool",
        (...,),
        "wsproxy does not look up the upstream certificate: each leaf names the host the "
        "client asked for (SNI, else the CONNECT host), which is what the client checks",
    ),
    "stream_large_bodies": (
        "str",
        (...,),
        "wsproxy streams every HTTP body and WebSocket frame already",
    ),
    "server": ("bool", (True,), "wsproxy always runs its proxy; `wsproxy show FILE` reads one"),
    "rawtcp": (
        "bool",
        (False,),
        "inside a tunnel wsproxy speaks HTTP or TLS; other protocols are piped untouched only "
        "for --ignore-hosts REGEX",
    ),
    "http2": ("bool", (False,), _HTTP11),
    "http3": ("bool", (False,), _HTTP11),
    "connection_strategy": ("str", ("lazy",), "wsproxy connects upstream once a request is read"),
    "block_private": (
        "bool",
        (False,),
        "wsproxy always serves loopback and private clients (listen on 127.0.0.1, the "
        "default, or firewall them)",
    ),
    "keep_host_header": (
        "bool",
        (False,),
        "in reverse mode wsproxy sends the upstream's own name as Host",
    ),
    "keep_alt_svc_header": ("bool", (True,), "wsproxy forwards response headers, Alt-Svc too"),
    "validate_inbound_headers": ("bool", (True,), "wsproxy checks every head it reads"),
    "tls_version_client_min": ("str", ("TLS1_2",), _TLS),
    "tls_version_server_min": ("str", ("TLS1_2",), _TLS),
    "tls_version_client_max": ("str", ("UNBOUNDED", "TLS1_3"), _TLS),
    "tls_version_server_max": ("str", ("UNBOUNDED", "TLS1_3"), _TLS),
}

_UI = "wsproxy has no interactive UI; it logs to stderr and `wsproxy show FILE` prints a capture"
_REPLAY = "no server replay in the proxy; `wsproxy replay --serve FILE` plays a capture's server"
_DNS = "wsproxy has no DNS mode (it relays WebSockets)"
_PLUGIN = "use a plugin: -s rewrite (WebSocket messages) or your own -s FILE"
_CIPHERS = "wsproxy uses OpenSSL's defaults"

# Options wsproxy has no equivalent for: name -> why, and what to use instead.
UNSUPPORTED: dict[str, str] = {
    "tcp_hosts": "wsproxy relays no other TCP protocol after intercepting TLS; use "
    "--ignore-hosts REGEX to tunnel it untouched",
    "udp_hosts": "wsproxy relays TCP only",
    "show_ignored_hosts": "ignored connections are piped untouched and not recorded",
    "block_list": "use -s block --set block_hosts=REGEX (or block_paths, block_origins)",
    "add_upstream_certs_to_client_chain": "clients get the leaf and wsproxy's CA only",
    "connect_addr": "wsproxy connects upstream from the address the system picks",
    "client_certs": "wsproxy presents no client certificate upstream",
    "http_connect_send_host_header": "wsproxy decides the headers of its CONNECT to an "
    "upstream proxy itself",
    "cert_passphrase": "decrypt the key first: openssl pkey -in FILE -out PLAIN.pem",
    "request_client_cert": "wsproxy does not ask clients for certificates",
    "key_size": "new CAs are RSA 2048, leaves P-256 EC",
    "ciphers_client": _CIPHERS,
    "ciphers_server": _CIPHERS,
    "tls_ecdh_curve_client": _CIPHERS,
    "tls_ecdh_curve_server": _CIPHERS,
    "http2_ping_keepalive": _HTTP11,
    "normalize_outbound_headers": _HTTP11,
    "body_size_limit": "HTTP bodies are streamed without a limit; --max-message-size and "
    "--max-frame-size limit WebSockets",
    "anticache": "wsproxy forwards request headers unchanged",
    "showhost": "log lines name the server each request goes to (the CONNECT target or the "
    "absolute URL)",
    "stickycookie": _PLUGIN,
    "stickyauth": _PLUGIN,
    "map_local": _PLUGIN,
    "map_remote": _PLUGIN,
    "modify_body": _PLUGIN,
    "modify_headers": _PLUGIN,
    "save_stream_filter": "mitmproxy filter expressions; use --capture-filter REGEX (matched "
    "against the WebSocket URL)",
    "rfile": "use `wsproxy show FILE` to print a capture",
    "readfile_filter": "use `wsproxy show FILE`",
    "client_replay": "use `wsproxy replay FILE` (plays a capture's client against its server)",
    "client_replay_concurrency": "use `wsproxy replay FILE`",
    "server_replay": _REPLAY,
    **{
        f"server_replay_{suffix}": _REPLAY
        for suffix in (
            "extra",
            "kill_extra",
            "reuse",
            "refresh",
            "nopop",
            "ignore_content",
            "ignore_host",
            "ignore_params",
            "ignore_payload_params",
            "ignore_port",
            "use_headers",
        )
    },
    "keepserving": "wsproxy runs until SIGINT or SIGTERM",
    "onboarding": "the CA page at http://wsproxy.invalid/ is always served",
    "onboarding_host": "the CA page is at http://wsproxy.invalid/",
    "strip_ech": _DNS,
    "dns_name_servers": _DNS,
    "dns_use_hosts_file": _DNS,
    "export_preserve_original_ip": _UI,
    "content_view_lines_cutoff": _UI,
    "intercept": _UI,
    "intercept_active": _UI,
    "view_filter": _UI,
    "view_order": _UI,
    "view_order_reversed": _UI,
    "dumper_filter": _UI,
    "dumper_default_contentview": _UI,
    "command_history": _UI,
}
# mitmproxy's console and web UIs have many options of their own, all with these prefixes.
UI_PREFIXES = ("console_", "web_")

# mitmproxy's booleans that default to true (``toggle`` turns them false).
TRUE_BY_DEFAULT = {
    "server",
    "rawtcp",
    "websocket",
    "block_global",
    "upstream_cert",
    "http2",
    "http3",
    "validate_inbound_headers",
    "normalize_outbound_headers",
    "strip_ech",
}

# mitmproxy's dedicated flags for these options (where wsproxy has no flag of that name):
# flag -> (option, the value a switch stands for; None: the flag takes a value).
FLAGS: dict[str, tuple[str, str | None]] = {
    "-m": ("mode", None),
    "--scripts": ("scripts", None),
    "--save-stream-file": ("save_stream_file", None),
    "--flow-detail": ("flow_detail", None),
    "--no-ssl-insecure": ("ssl_insecure", "false"),
    "--server": ("server", "true"),
    "--no-server": ("server", "false"),
    "-n": ("server", "false"),
    "--rawtcp": ("rawtcp", "true"),
    "--no-rawtcp": ("rawtcp", "false"),
    "--http2": ("http2", "true"),
    "--no-http2": ("http2", "false"),
    "--anticomp": ("anticomp", "true"),
    "--no-anticomp": ("anticomp", "false"),
    "--anticache": ("anticache", "true"),
    "--no-anticache": ("anticache", "false"),
    "--showhost": ("showhost", "true"),
    "--no-showhost": ("showhost", "false"),
    "--show-ignored-hosts": ("show_ignored_hosts", "true"),
    "--no-show-ignored-hosts": ("show_ignored_hosts", "false"),
    "--tcp-hosts": ("tcp_hosts", None),
    "--cert-passphrase": ("cert_passphrase", None),
    "--stickycookie": ("stickycookie", None),
    "--stickyauth": ("stickyauth", None),
    "--rfile": ("rfile", None),
    "-r": ("rfile", None),
    "--client-replay": ("client_replay", None),
    "-C": ("client_replay", None),
    "--server-replay": ("server_replay", None),
    "-S": ("server_replay", None),
    "--server-replay-extra": ("server_replay_extra", None),
    "--map-remote": ("map_remote", None),
    "-M": ("map_remote", None),
    "--map-local": ("map_local", None),
    "--modify-body": ("modify_body", None),
    "-B": ("modify_body", None),
    "--modify-headers": ("modify_headers", None),
    "-H": ("modify_headers", None),
}


def lookup(name: str) -> CoreOption | None:
    """What wsproxy makes of mitmproxy's option ``name``; None for a name mitmproxy's core
    does not have (a plugin's option, then)."""
    default = name in TRUE_BY_DEFAULT
    if name in MAPPED:
        kind, apply, words = MAPPED[name]
        return CoreOption(name, kind, apply, words, default)
    if name in ALREADY:
        kind, values, note = ALREADY[name]
        return CoreOption(name, kind, _already(values, note), _already_words(values), default)
    if name in UNSUPPORTED or name.startswith(UI_PREFIXES):
        reason = UNSUPPORTED.get(name, _UI)
        return CoreOption(name, "str", _refuse(reason), f"not supported: {reason}", default)
    return None


def names() -> list[str]:
    """Every option name the tables know (the UI prefixes aside)."""
    return sorted({*MAPPED, *ALREADY, *UNSUPPORTED})


def _refuse(reason: str) -> Apply:
    def apply(value: Value) -> list[str]:
        raise Unsupported(reason)

    return apply


def _already(values: tuple[object, ...], note: str) -> Apply:
    def apply(value: Value) -> list[str]:
        if ... in values or value in values:
            raise Already(note)
        raise Unsupported(note)

    return apply


def _already_words(values: tuple[object, ...]) -> str:
    if ... in values:
        return "accepted, no effect"
    spelled = " or ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    return f"{spelled}: what wsproxy does; otherwise not supported"


# -- reading the command line ------------------------------------------------------------------


def _value(entry: CoreOption, text: str | None, current: bool) -> Value:
    """``--set`` text as mitmproxy reads it for the option's kind; raises ValueError."""
    if entry.kind == "bool":
        if text is None:
            return True
        lowered = text.strip().lower()
        if lowered == "toggle":
            return not current
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("not a boolean: use true or false (or no value for true)")
    if text is None or (entry.kind == "int" and text == ""):
        return None
    if entry.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError("not an integer") from None
    return text


def _dedicated_flags(ours: set[str]) -> dict[str, tuple[CoreOption, str | None]]:
    """mitmproxy's own flags wsproxy does not define: flag -> (its option, the value a
    boolean flag stands for; None for a flag that takes a value)."""
    flags: dict[str, tuple[CoreOption, str | None]] = {}
    for flag, (name, fixed) in FLAGS.items():
        entry = lookup(name)
        assert entry is not None, name
        if flag not in ours:
            flags[flag] = (entry, fixed)
    return flags


def translate(argv: Sequence[str], ours: set[str]) -> Translation:
    """``argv`` with mitmproxy's core options (``--set NAME[=VALUE]`` and mitmproxy's own
    flags missing from ``ours``) rewritten into wsproxy's flags; ConfigError for a value
    wsproxy cannot honour. ``--set`` of any other name, and everything after ``--``, is kept."""
    dedicated = _dedicated_flags(ours)
    out = Translation([])
    state: dict[str, bool] = {}  # booleans set so far, for "toggle"
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            out.argv += argv[i - 1 :]
            break
        spelling: str
        entry: CoreOption | None
        text: str | None
        if token == "--set" or token.startswith("--set="):
            if token == "--set":
                if i >= len(argv):
                    out.argv.append(token)  # argparse says what is missing
                    break
                spec = argv[i]
                i += 1
            else:
                spec = token[len("--set=") :]
            name, eq, rest = spec.partition("=")
            entry = lookup(name.strip())
            if entry is None:
                out.argv += ["--set", spec]
                continue
            spelling, text = f"--set {spec}", rest if eq else None
        else:
            flag, eq, rest = token.partition("=") if token.startswith("--") else (token, "", "")
            meaning = dedicated.get(flag)
            if meaning is None:
                out.argv.append(token)
                continue
            entry, fixed = meaning
            if fixed is not None:
                text = fixed
            elif eq:
                text = rest
            elif i < len(argv):
                text = argv[i]
                i += 1
            else:
                raise ConfigError(f"{flag}: expected a value")
            spelling = token if fixed is not None or eq else f"{flag} {text}"
        out.argv += _apply(entry, spelling, text, state, out.notes)
    return out


def _apply(
    entry: CoreOption, spelling: str, text: str | None, state: dict[str, bool], notes: list[str]
) -> list[str]:
    flags: list[str] = []
    try:
        value = _value(entry, text, state.get(entry.name, entry.default))
        flags = entry.apply(value)
    except ValueError as error:
        raise ConfigError(f"{spelling}: {error}") from None
    except Unsupported as error:
        raise ConfigError(f"{spelling}: not supported: {error}") from None
    except Already as note:
        notes.append(f"{spelling}: {note}")
    if isinstance(value, bool):
        state[entry.name] = value
    return flags
