"""Tests of plugins: hooks, bundled plugins, script loading and mitmproxy addons (the proxy,
upstreams and waits come from ``tests.harness``)."""
