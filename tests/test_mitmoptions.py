"""mitmproxy's core option names (``wsproxy.mitmoptions``): how each spelling is translated
into wsproxy's flags, and, through the real CLI, that every option wsproxy cannot honour is
refused on one line with status 2 and that accepted no-op values start the proxy.

The options' effects on traffic are shown by tests/integration/test_mitm_options.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import StartProxy
from tests.test_cli_errors import check, run
from wsproxy.exceptions import ConfigError
from wsproxy.flags import build_parser, options_from_args
from wsproxy.mitmoptions import (
    ALREADY,
    FLAGS,
    MAPPED,
    UNSUPPORTED,
    lookup,
    names,
    translate,
)
from wsproxy.proxy.access import AccessPolicy

ROOT = Path(__file__).resolve().parents[1]
OURS = build_parser().option_strings


def flags(*argv: str) -> list[str]:
    return translate(argv, OURS).argv


def notes(*argv: str) -> list[str]:
    return translate(argv, OURS).notes


def refused(*argv: str) -> str:
    with pytest.raises(ConfigError) as info:
        translate(argv, OURS)
    return str(info.value)


# -- translation ---------------------------------------------------------------------------

MAPPINGS = [
    (["--set", "listen_host=127.0.0.2"], ["--listen-host=127.0.0.2"]),
    (["--set", "listen_port=8081"], ["--listen-port=8081"]),
    (["--set", "listen_port="], []),  # mitmproxy: None, the mode's default port
    (["--set", "confdir=/tmp/x"], ["--confdir=/tmp/x"]),
    (
        ["--set", "mode=socks5@1081", "--set", "mode=regular"],
        ["--mode=socks5@1081", "--mode=regular"],
    ),
    (
        ["--set", "ignore_hosts=a", "--set", "ignore_hosts=b"],
        ["--ignore-hosts=a", "--ignore-hosts=b"],
    ),
    (["--set", "ignore_hosts"], []),  # no value: the empty list, mitmproxy's default
    (["--set", "allow_hosts=^x:443$"], ["--allow-hosts=^x:443$"]),
    (["--set", "certs=*.a.test=a.pem"], ["--certs=*.a.test=a.pem"]),
    (["--set", "websocket=false"], ["--no-websocket"]),
    (["--set", "websocket=true"], []),
    (["--set", "proxyauth=u:p"], ["--proxyauth=u:p"]),
    (["--set", "upstream_auth=u:p"], ["--upstream-auth=u:p"]),
    (["--set", "block_global=false"], ["--allow-clients=0.0.0.0/0", "--allow-clients=::/0"]),
    (["--set", "block_global=true"], []),
    (["--set", "ssl_insecure=true"], ["--ssl-insecure"]),
    (["--set", "ssl_insecure"], ["--ssl-insecure"]),  # no value: true
    (["--set", "ssl_insecure=false"], []),
    (["--set", "ssl_insecure=toggle"], ["--ssl-insecure"]),
    (["--set", "ssl_insecure=true", "--set", "ssl_insecure=toggle"], ["--ssl-insecure"]),
    (["--set", "ssl_verify_upstream_trusted_ca=ca.pem"], ["--upstream-ca=ca.pem"]),
    (["--set", "ssl_verify_upstream_trusted_confdir=certs/"], ["--upstream-ca=certs/"]),
    (["--set", "anticomp=true"], ["--no-compression"]),
    (["--set", "termlog_verbosity=debug"], ["-v", "-v"]),
    (["--set", "termlog_verbosity=info"], []),
    (["--set", "termlog_verbosity=warn"], ["-q"]),
    (["--set", "termlog_verbosity=error"], ["-q"]),
    (["--set", "flow_detail=0"], ["-q"]),
    (["--set", "flow_detail=2"], []),
    (["--set", "flow_detail=3"], ["-v"]),
    (["--set", "proxy_debug=true"], ["-v", "-v"]),
    (["--set", "save_stream_file=a.jsonl"], ["--capture=a.jsonl"]),
    (["--set", "hardump=a.har"], ["--capture=a.har"]),
    (["--set", "scripts=log"], ["--script=log"]),
    # mitmproxy's own flags, where wsproxy has none of that name.
    (["-m", "socks5"], ["--mode=socks5"]),
    (["--scripts", "log", "--save-stream-file=a.jsonl"], ["--script=log", "--capture=a.jsonl"]),
    (["--flow-detail", "3"], ["-v"]),
    (["--anticomp"], ["--no-compression"]),
    (["--no-anticomp"], []),
    (["--no-ssl-insecure"], []),
    # The --set= spelling, the value with "=" in it, and flags that are wsproxy's own.
    (["--set=ignore_hosts=a=b"], ["--ignore-hosts=a=b"]),
    (
        ["-k", "--ignore-hosts", "x", "-w", "a.jsonl"],
        ["-k", "--ignore-hosts", "x", "-w", "a.jsonl"],
    ),
    # Plugin options, and everything after "--", are left alone.
    (["--set", "log_json=true"], ["--set", "log_json=true"]),
    (["--", "--set", "anticache"], ["--", "--set", "anticache"]),
]


@pytest.mark.parametrize(("argv", "want"), MAPPINGS, ids=lambda v: " ".join(v))
def test_translation(argv: list[str], want: list[str]) -> None:
    assert flags(*argv) == want
    if not want or want[0].partition("=")[0] in OURS:  # --upstream-auth arrives in another branch
        build_parser().parse_args(want)  # wsproxy's parser takes the result


@pytest.mark.parametrize(("value", "served"), [("false", True), ("true", False)])
def test_block_global_decides_whether_public_clients_are_served(value: str, served: bool) -> None:
    """A public client address needs a network namespace in a process test; the admission
    policy the options build shows the effect."""
    args = build_parser().parse_args(flags("--set", f"block_global={value}"))
    policy = AccessPolicy(options_from_args(args).allow_clients)
    assert policy.allows("203.0.113.5") is served
    assert policy.allows("2001:db8::5") is served
    assert policy.allows("192.168.1.2")


def test_a_value_starting_with_a_dash_stays_a_value() -> None:
    args = build_parser().parse_args(flags("--set", "ignore_hosts=-x"))
    assert args.ignore_hosts == ["-x"]


def test_order_with_wsproxy_flags_is_kept() -> None:
    assert flags("--mode", "regular", "--set", "mode=socks5@1081", "--mode", "socks5@1082") == [
        "--mode",
        "regular",
        "--mode=socks5@1081",
        "--mode",
        "socks5@1082",
    ]


@pytest.mark.parametrize(
    ("argv", "note"),
    [
        (["--set", "upstream_cert=false"], "does not look up the upstream certificate"),
        (["--set", "upstream_cert=true"], "does not look up the upstream certificate"),
        (["--set", "http2=false"], "HTTP/1.1 only"),
        (["--no-http2"], "HTTP/1.1 only"),
        (["--set", "stream_large_bodies=1m"], "streams every HTTP body"),
        (["--set", "connection_strategy=lazy"], "once a request is read"),
        (["--no-rawtcp"], "speaks HTTP or TLS"),
        (["--set", "tls_version_client_min=TLS1_2"], "TLS 1.2 and 1.3"),
    ],
)
def test_values_wsproxy_has_anyway_are_noted(argv: list[str], note: str) -> None:
    assert flags(*argv) == []
    (line,) = notes(*argv)
    assert line.startswith(" ".join(argv) + ": ") and note in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "ssl_insecure=maybe"], "--set ssl_insecure=maybe: not a boolean"),
        (["--set", "listen_port=abc"], "--set listen_port=abc: not an integer"),
        (["--set", "flow_detail=9"], "--set flow_detail=9: not a detail level: use 0 to 4"),
        (["--set", "termlog_verbosity=loud"], "--set termlog_verbosity=loud: not a level"),
        (["--set", "hardump=a.json"], "--set hardump=a.json: the file must end in .har"),
        (["--set", "save_stream_file=+a.jsonl"], "appending (+FILE)"),
        (["--set", "save_stream_file=%Y.jsonl"], "strftime patterns"),
        (["--flow-detail"], "--flow-detail: expected a value"),
        (["--anticache"], "--anticache: not supported: wsproxy forwards request headers"),
        (["--tcp-hosts", "x"], "--tcp-hosts x: not supported: "),
        (["-n"], "-n: not supported: wsproxy always runs its proxy"),
        (["--set", "web_port=8082"], "--set web_port=8082: not supported: wsproxy has no"),
        (["--set", "console_palette=dark"], "not supported: wsproxy has no interactive UI"),
    ],
)
def test_refusals(argv: list[str], message: str) -> None:
    assert message in refused(*argv)


def test_every_dedicated_flag_names_a_known_option() -> None:
    for flag, (name, fixed) in FLAGS.items():
        entry = lookup(name)
        assert entry is not None, flag
        assert fixed in (None, "true", "false"), flag
        if name not in UNSUPPORTED:  # a switch for a boolean, a flag with a value otherwise
            assert (fixed is not None) == (entry.kind == "bool"), flag


def test_every_mapped_option_has_a_translation_case() -> None:
    covered = {arg.split("=")[0] for argv, _ in MAPPINGS for arg in argv if "=" in arg}
    assert not set(MAPPED) - covered


def test_no_bundled_plugin_option_takes_a_core_name() -> None:
    """A bundled plugin's option named like a core option would never reach the plugin."""
    declared = {
        name
        for path in (ROOT / "plugins").glob("*.py")
        for name in re.findall(r'Option\(\s*"(\w+)"', path.read_text())
    }
    assert len(declared) > 10, "the bundled plugins declare options"
    assert not {name for name in declared if lookup(name) is not None}


def test_the_readme_table_lists_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Coming from mitmproxy", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", section))
    prefixes = tuple(re.findall(r"`([a-z0-9_]+_)\*`", section))  # `server_replay_*`
    missing = {name for name in names() if name not in listed and not name.startswith(prefixes)}
    assert not missing, "options missing from the README's table"


# -- through the real command line ------------------------------------------------------------


def _refusal_cases() -> list[tuple[str, str]]:
    """Every option and value wsproxy refuses, with the reason it gives."""
    cases = [(name, reason) for name, reason in UNSUPPORTED.items()]
    for name, (kind, values, reason) in ALREADY.items():
        if ... in values:
            continue
        wrong = {"bool": "true" if False in values else "false"}.get(kind, "eager")
        if name.startswith("tls_version"):
            wrong = "TLS1_1"
        cases.append((f"{name}={wrong}", reason))
    return cases


@pytest.mark.parametrize(("spec", "reason"), _refusal_cases(), ids=lambda v: v.split("=")[0])
def test_unsupported_options_are_refused_on_one_line(
    tmp_path: Path, spec: str, reason: str
) -> None:
    status, stderr = run("--set", spec, "--confdir", str(tmp_path / "confdir"), cwd=tmp_path)
    check(status, stderr, 2, f"wsproxy: --set {spec}: not supported: {reason}")
    assert len(stderr.strip().splitlines()) == 1, stderr


async def test_accepted_values_start_the_proxy_and_say_why(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(
        "--set", "upstream_cert=false", "--set", "http2=false", "--no-rawtcp", verbose=False
    )
    log = await proxy.wait_log(lambda text: "listening on" in text)
    assert "--set upstream_cert=false: wsproxy does not look up the upstream certificate" in log
    assert "--set http2=false: wsproxy speaks HTTP/1.1 only" in log
    assert "--no-rawtcp: inside a tunnel wsproxy speaks HTTP or TLS" in log


def test_the_parser_knows_every_flag_it_defines_groups_and_help_included() -> None:
    from wsproxy.web.cli import build_web_parser

    web = build_web_parser().option_strings
    assert {"-h", "--help", "--web-port", "--web-host", "--listen-port", "-p"} <= web
    assert "--web-port" not in OURS  # plain wsproxy has no UI
    assert "--listen-port" in OURS
    assert translate(["--web-port", "9000"], web).argv == ["--web-port", "9000"]
