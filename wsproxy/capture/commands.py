"""The capture subcommands as ``wsproxy.cli.SUBCOMMANDS`` calls them (imports kept lazy)."""

from __future__ import annotations

from collections.abc import Sequence


def cmd_show(argv: Sequence[str]) -> int:
    from wsproxy.capture.show import show

    return show(argv)


def cmd_replay(argv: Sequence[str]) -> int:
    from wsproxy.capture.replay import replay

    return replay(argv)


def cmd_har(argv: Sequence[str]) -> int:
    from wsproxy.capture.har import main

    return main(list(argv))


def cmd_mitm(argv: Sequence[str]) -> int:
    from wsproxy.capture.mitmflows import main

    return main(list(argv))
