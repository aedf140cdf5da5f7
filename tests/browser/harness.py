"""Helpers for the browser test: an NSS database and headless Chromium (the proxy process is
``tests.harness.ProxyProcess``).

Chromium is driven from the command line (no Playwright, no WebDriver): it opens the test page,
the page reports its results with a POST, and Chromium is then killed with its whole process
group.
"""

from __future__ import annotations

import json
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


def _browser_and_certutil(name: str, browser: str | None, hint: str) -> tuple[str, str]:
    """``browser`` (its path, or None when not found) and certutil's. Missing tools skip the
    test, except in CI, where the test must run: there they fail it."""
    certutil = shutil.which("certutil")
    missing = [tool for tool, path in ((name, browser), ("certutil", certutil)) if not path]
    if missing:
        message = f"{' and '.join(missing)} not found: install them with `{hint}`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the {name} test cannot run: {message}")
        pytest.skip(message)
    assert browser is not None and certutil is not None
    return browser, certutil


def browser_tools() -> tuple[str, str]:
    """Paths of chromium and certutil (``_browser_and_certutil``)."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    return _browser_and_certutil("chromium", chromium, INSTALL_HINT)


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


class BrowserProcess:
    """A browser started on one URL in its own process group, its output in ``log_path``;
    ``stop`` kills the whole group (the wrapper script, the browser and its helpers)."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
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


def _browser_env(home: Path) -> dict[str, str]:
    """The test's environment without proxy variables, with ``home`` as HOME."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(home)
    return env


class Chromium(BrowserProcess):
    """Headless Chromium on one URL.

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
        flags = CHROMIUM_FLAGS
        if resolver_rules is not None:
            flags = [f for f in flags if not f.startswith("--host-resolver-rules=")]
            flags.append(f"--host-resolver-rules={resolver_rules}")
        proxy = [f"--proxy-server={proxy_url}"] if proxy_url else ["--no-proxy-server"]
        command = [binary, *flags, f"--user-data-dir={profile}", *proxy, url]
        if netns is not None:
            command = in_netns(netns, *command)
        super().__init__(command, _browser_env(home), profile.parent / "chromium.log")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


FIREFOX_HINT = "apt-get install firefox-esr libnss3-tools"

# A throw-away Firefox profile that sends nothing of its own: no updates, telemetry, studies,
# safe browsing lists, remote settings, captive portal or connectivity checks, DNS over HTTPS,
# prefetching or first-run pages. What still slips through goes to the proxy auto-config
# (``firefox_pac``), which sends every host but the test's to a port nobody listens on: such
# a request fails at once, and no name is looked up, by Firefox or by the proxy.
FIREFOX_PREFS: dict[str, bool | int | str] = {
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
    "browser.discovery.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.search.geoSpecificDefaults": False,
    "browser.search.update": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.tabs.warnOnClose": False,
    "captivedetect.canonicalURL": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": "",
    "extensions.blocklist.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.update.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "geo.provider.network.url": "",
    "identity.fxaccounts.enabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-manager.url": "",
    "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,
    "network.prefetch-next": False,
    "network.trr.mode": 5,  # DNS over HTTPS off
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.unified": False,
    # Firefox never proxies 127.0.0.1 unless told to: the test's servers listen there.
    "network.proxy.allow_hijacking_localhost": True,
    "network.proxy.no_proxies_on": "",
    "network.proxy.type": 2,  # the auto-config file below
}


def firefox_tools() -> tuple[str, str]:
    """Paths of firefox and certutil (``_browser_and_certutil``)."""
    firefox = os.environ.get("FIREFOX") or shutil.which("firefox-esr") or shutil.which("firefox")
    return _browser_and_certutil("firefox", firefox, FIREFOX_HINT)


def firefox_pac(proxy: str, hosts: list[str]) -> str:
    """A proxy auto-config script: ``hosts`` go to ``proxy`` (``PROXY h:p`` or ``SOCKS5 h:p``),
    every other host to port 9 of 127.0.0.1, where nothing listens."""
    names = ", ".join(f'"{host}"' for host in hosts)
    return (
        "function FindProxyForURL(url, host) {\n"
        f'  if ([{names}].includes(host)) return "{proxy}";\n'
        '  return "PROXY 127.0.0.1:9";\n'
        "}\n"
    )


def make_firefox_profile(certutil: str, profile: Path, ca_pem: Path, pac: str) -> None:
    """A Firefox profile in ``profile``: ``FIREFOX_PREFS``, the auto-config ``pac``, and an
    NSS database of its own that trusts ``ca_pem`` (and nothing else) for TLS servers."""
    profile.mkdir(parents=True)
    pac_file = profile / "proxy.pac"
    pac_file.write_text(pac)
    prefs = {**FIREFOX_PREFS, "network.proxy.autoconfig_url": pac_file.as_uri()}
    lines = [
        f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in prefs.items()
    ]
    (profile / "user.js").write_text("\n".join(lines) + "\n")
    db = f"sql:{profile}"
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "wsproxy test CA", "-i", str(ca_pem)],
    ):
        subprocess.run([certutil, "-d", db, *args], check=True, capture_output=True, timeout=30)


class Firefox(BrowserProcess):
    """Headless Firefox on one URL, with a profile ``make_firefox_profile`` made."""

    def __init__(self, binary: str, url: str, home: Path, profile: Path) -> None:
        env = _browser_env(home)
        env.update(MOZ_CRASHREPORTER_DISABLE="1", MOZ_HEADLESS="1")
        home.mkdir(parents=True, exist_ok=True)
        command = [binary, "--headless", "--no-remote", "--profile", str(profile), url]
        super().__init__(command, env, profile.parent / "firefox.log")
