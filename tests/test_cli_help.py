"""``wsproxy --help`` names every subcommand, from the table ``main`` dispatches on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT, proxy_free_env
from wsproxy.subcommands import SUBCOMMANDS

TIMEOUT = 60  # seconds for one CLI run: the machine is shared


def wsproxy(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return result.stdout


def test_help_has_one_line_per_subcommand() -> None:
    epilog = wsproxy("--help").split("\nsubcommands (wsproxy NAME --help for their flags):\n")[1]
    lines = epilog.splitlines()
    assert [line.split()[0] for line in lines] == ["ca", "show", "replay", "har", "mitm"]
    for line, (name, sub) in zip(lines, SUBCOMMANDS.items(), strict=True):
        assert line.split(None, 1) == [name, sub.summary]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_listed_subcommand_answers_help(name: str) -> None:
    """A name in the table is a subcommand that runs: its own --help, under its own name."""
    assert wsproxy(name, "--help").startswith(f"usage: wsproxy {name}")
