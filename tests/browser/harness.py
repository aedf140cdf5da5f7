"""Helpers for the browser test: an NSS database and headless Chromium (the proxy process is
``tests.harness.ProxyProcess``).

Chromium is driven from the command line (no Playwright, no WebDriver): it opens the test page,
the page reports its results with a POST, and Chromium is then killed with its whole process
group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import HOST
from tests.netns import in_netns

INSTALL_HINT = "apt-get install chromium libnss3-tools"

# Requests of Chromium's own that no flag stops (checked with Chromium 156): the sign-in
# code lists the Google accounts of every profile when its network comes up, and the component
# updater checks in even with --disable-component-update. They bypass the proxy, so that
# Chromium itself resolves them, and the resolver rules below make every name but the test's
# fail at once (~NOTFOUND): no lookup leaves the machine, neither from Chromium nor from the
# proxy. Everything else goes through the proxy, where the test would see it.
UNSTOPPABLE_HOSTS = ["accounts.google.com", "update.googleapis.com"]
TEST_HOSTS = [HOST]  # the page and both echo servers listen on 127.0.0.1

# Flags for a quiet, throw-away headless Chromium. ``<-loopback>`` matters: without it Chromium
# talks to 127.0.0.1 directly and never uses the proxy.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--proxy-bypass-list=" + ";".join(["<-loopback>", *UNSTOPPABLE_HOSTS]),
    "--host-resolver-rules=MAP * ~NOTFOUND, " + ", ".join(f"EXCLUDE {host}" for host in TEST_HOSTS),
    # No traffic of Chromium's own: every request the proxy sees is the test's (see
    # test_chromium_sends_nothing_but_the_test_page and /work/shared/browser-e2e/README.md).
    "--no-first-run",
    "--no-default-browser-check",
    "--no-service-autorun",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",  # metrics are recorded (as headless does) but never uploaded
    "--safebrowsing-disable-auto-update",
    "--disable-features="
    + ",".join(
        [
            "OptimizationHints",
            "OptimizationHintsFetching",
            "MediaRouter",
            "DialMediaRouteProvider",
            "Translate",
            "AutofillServerCommunication",
            "CertificateTransparencyComponentUpdater",
            "NetworkTimeServiceQuerying",  # clients2.google.com/time/1/current
            "SafeBrowsingEnhancedProtection",
            "InterestFeedContentSuggestions",
            "PrivacySandboxSettings4",
            "AccountConsistency",
        ]
    ),
]


def browser_tools() -> tuple[str, str]:
    """Paths of chromium and certutil. Missing tools skip the test, except in CI, where the
    test must run: there they fail it."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    certutil = shutil.which("certutil")
    missing = [name for name, path in (("chromium", chromium), ("certutil", certutil)) if not path]
    if missing:
        message = f"{' and '.join(missing)} not found: install them with `{INSTALL_HINT}`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser test cannot run: {message}")
        pytest.skip(message)
    assert chromium is not None and certutil is not None
    return chromium, certutil


def make_nssdb(certutil: str, home: Path, ca_pem: Path) -> None:
    """``$HOME/.pki/nssdb`` trusting ``ca_pem`` (and nothing else) as a CA for TLS servers.

    Chromium on Linux reads user trust anchors from there, not from its --user-data-dir.
    """
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "wsproxy test CA", "-i", str(ca_pem)],
    ):
        subprocess.run([certutil, "-d", db, *args], check=True, capture_output=True, timeout=30)


class Chromium:
    """Headless Chromium on one URL, in its own process group, always killed by ``stop``.

    ``proxy_url`` None: no proxy at all (``--no-proxy-server``, for a client whose traffic a
    router redirects); ``netns`` runs it in that network namespace; ``resolver_rules``
    replaces the default ``--host-resolver-rules`` (to map a test name to an address).
    """

    def __init__(
        self,
        binary: str,
        url: str,
        proxy_url: str | None,
        home: Path,
        profile: Path,
        *,
        netns: str | None = None,
        resolver_rules: str | None = None,
    ) -> None:
        self.log_path = profile.parent / "chromium.log"
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["HOME"] = str(home)
        flags = CHROMIUM_FLAGS
        if resolver_rules is not None:
            flags = [f for f in flags if not f.startswith("--host-resolver-rules=")]
            flags.append(f"--host-resolver-rules={resolver_rules}")
        proxy = [f"--proxy-server={proxy_url}"] if proxy_url else ["--no-proxy-server"]
        command = [binary, *flags, f"--user-data-dir={profile}", *proxy, url]
        if netns is not None:
            command = in_netns(netns, *command)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> None:
        """Kill the whole process group (the wrapper script, the browser and its helpers)."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                self.proc.poll()
                time.sleep(0.05)  # a poll: nothing signals the end of a process group
            if not _group_alive(self.proc.pid):
                break
        self.proc.wait(10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
