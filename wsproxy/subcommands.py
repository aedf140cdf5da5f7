"""``wsproxy NAME``: the subcommands beside the proxy (the CA, and the capture tools)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from wsproxy.capture.commands import cmd_har, cmd_mitm, cmd_replay, cmd_show
from wsproxy.options import Options


def cmd_ca(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsproxy ca", description="wsproxy's CA certificate")
    parser.add_argument("--confdir", type=Path, default=Options().confdir)
    parser.add_argument("--path", action="store_true", help="print the CA certificate's path")
    args = parser.parse_args(argv)
    from wsproxy.tls import CertAuthority

    ca = CertAuthority.load_or_create(args.confdir.expanduser())
    if args.path:
        print(ca.cert_pem_path)
    else:
        print(f"certificate: {ca.cert_pem_path}\nSHA-256 fingerprint: {ca.fingerprint}")
    return 0


class Subcommand(NamedTuple):
    run: Callable[[Sequence[str]], int]
    summary: str  # its line in ``wsproxy --help``


SUBCOMMANDS = {
    "ca": Subcommand(cmd_ca, "print the CA certificate's path and fingerprint (--path: path only)"),
    "show": Subcommand(
        cmd_show, "print captures (.jsonl, .har, .mitm; several merged by time) as -v log lines"
    ),
    "replay": Subcommand(
        cmd_replay, "replay a captured connection to a server (--serve: to a client)"
    ),
    "har": Subcommand(cmd_har, "turn a JSONL capture or a crashed run's journal into HAR"),
    "mitm": Subcommand(cmd_mitm, "turn a JSONL capture or journal into a mitmproxy flow file"),
}


def subcommands_help() -> str:
    """The epilog of ``wsproxy --help``: one line per entry of SUBCOMMANDS, so none is missed."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    return "subcommands (wsproxy NAME --help for their flags):\n" + "\n".join(lines)
