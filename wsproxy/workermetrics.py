"""``--metrics-port`` with ``--workers N``: one endpoint, every worker's series.

The supervisor serves the endpoint (token and Host checked as in one process); at each scrape
it asks every worker over its Unix socket (``wsproxy.metrics.WorkerMetricsEndpoint``) and
merges the answers, a ``worker="i"`` label added to each sample, so that nothing is summed
away (a restarted worker's counters start again from 0, which Prometheus' ``rate`` reads as
a counter reset) and ``sum without (worker) (...)`` gives the run's totals. ``wsproxy_worker_up``
says which workers answered; one that did not (being restarted) has no other series in that
scrape.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

__all__ = ["WorkerScrapes", "merge_expositions", "worker_socket"]

SCRAPE_TIMEOUT = 5.0  # seconds for one worker's answer


def worker_socket(directory: Path, index: int) -> Path:
    """Where worker ``index`` serves its metrics (the same path in each of its lives)."""
    return directory / f"w{index}.sock"


class WorkerScrapes:
    """Every worker's metrics, as one Prometheus text exposition."""

    def __init__(self, directory: Path, count: int) -> None:
        self.directory = directory
        self.count = count

    async def render(self) -> bytes:
        answers = await asyncio.gather(*(self._scrape(index) for index in range(1, self.count + 1)))
        texts = {index: text for index, text in enumerate(answers, 1) if text is not None}
        up = [
            "# HELP wsproxy_worker_up whether the worker answered this scrape",
            "# TYPE wsproxy_worker_up gauge",
            *(
                f'wsproxy_worker_up{{worker="{i}"}} {int(i in texts)}'
                for i in range(1, self.count + 1)
            ),
        ]
        return ("\n".join(up) + "\n" + merge_expositions(texts)).encode()

    async def _scrape(self, index: int) -> str | None:
        connector = aiohttp.UnixConnector(path=str(worker_socket(self.directory, index)))
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get("http://worker/metrics") as response,
            ):
                if response.status != 200:
                    return None
                return await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None


def merge_expositions(texts: dict[int, str]) -> str:
    """Prometheus text expositions of the workers (by index) as one: each family's HELP and
    TYPE once, then its samples from every worker, each labelled with its worker."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for index, text in sorted(texts.items()):
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head = heads.setdefault(family, [])
                    samples.setdefault(family, [])
                    if len(head) < 2 and line not in head:
                        head.append(line)
                continue
            samples.setdefault(family, []).append(_labelled(line, index))
    out: list[str] = []
    for family, lines in samples.items():
        out.extend(heads.get(family, []))
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""


def _labelled(sample: str, index: int) -> str:
    """``name{a="b"} 1`` -> ``name{a="b",worker="i"} 1`` (``name 1`` -> ``name{worker="i"} 1``)."""
    brace, space = sample.find("{"), sample.find(" ")
    label = f'worker="{index}"'
    if brace != -1 and (space == -1 or brace < space):
        close = sample.rfind("}")
        inner = sample[brace + 1 : close].strip().rstrip(",")
        joined = f"{inner},{label}" if inner else label
        return f"{sample[:brace]}{{{joined}}}{sample[close + 1 :]}"
    return f"{sample[:space]}{{{label}}}{sample[space:]}"
