"""The API is never the bottleneck: request rates of ``soundry serve`` while its queue fills.

20 concurrent clients (one asyncio ``aiohttp`` session, 20 tasks, in this process) against a real
``soundry serve --no-ui --no-worker`` (embedded Redis, one uvicorn process; no worker, so every job
stays queued and the queue only grows):

1. ``POST /v1/jobs`` until ``--jobs`` (default 1,200) more are queued, after 100 unmeasured ones
   (the server's first requests open connections and threads): requests per second, p50/p99;
2. ``GET /v1/jobs/{id}`` of random queued jobs (each answer carries its queue position),
   ``--gets`` requests (default 6,000): requests per second, p50/p99.

Goal (issue #16): GET >= 1,000 req/s and POST >= 300 req/s with p99 <= 100 ms on 2 cores. The
clients share the machine with the server, so the figures are a floor for what a remote client
sees. Run: ``uv run --frozen python -m benchmarks.api [--jobs N] [--gets N]``; prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import load_average, machine_info, percentile
from benchmarks.e2e import soundry_server

CLIENTS = 20
WARMUP = 100
"""POSTs sent (and queued) before the measured ones."""
BODY = {"kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "rain on a tin roof", "duration_s": 1.0}


async def _hammer(url: str, n: int, clients: int, request: Any) -> tuple[float, list[float], list[Any]]:
    """Send ``n`` requests from ``clients`` concurrent tasks; (seconds, latencies, answers).

    The load comes from aiohttp, not httpx: on 2 shared cores httpx's client spent more CPU per request
    (~1.3 ms) than the server it measured (~1 ms), so it measured itself; aiohttp's costs ~0.2 ms.
    """
    latencies: list[float] = []
    answers: list[Any] = []
    left = iter(range(n))
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            for i in left:
                started = time.perf_counter()
                answer = await request(http, i)
                latencies.append(time.perf_counter() - started)
                answers.append(answer)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, latencies, answers


def _rates(seconds: float, latencies: list[float]) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round((percentile(latencies, 50) or 0) * 1000, 1),
        "p99_ms": round((percentile(latencies, 99) or 0) * 1000, 1),
    }


async def measure(url: str, jobs: int, gets: int) -> dict[str, Any]:
    async def post(http: aiohttp.ClientSession, _: int) -> str:
        async with http.post("/v1/jobs", json=BODY) as r:
            r.raise_for_status()
            return str((await r.json())["id"])

    await _hammer(url, WARMUP, CLIENTS, post)  # connections, threads, the broker channel: not measured
    seconds, latencies, ids = await _hammer(url, jobs, CLIENTS, post)
    posted = _rates(seconds, latencies)
    rng = random.Random(1)

    async def get(http: aiohttp.ClientSession, _: int) -> int | None:
        async with http.get(f"/v1/jobs/{rng.choice(ids)}") as r:
            r.raise_for_status()
            position: int | None = (await r.json())["queue_position"]
            return position

    seconds, latencies, positions = await _hammer(url, gets, CLIENTS, get)
    got = _rates(seconds, latencies)
    got["max_queue_position_seen"] = max(p or 0 for p in positions)
    return {"post": posted, "get": got, "queued_jobs": jobs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1200, help="jobs to queue (POST requests)")
    parser.add_argument("--gets", type=int, default=6000, help="GET requests")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with soundry_server(root / "data", root / "models", "cpu", 180.0, "--no-worker") as server:
            figures = asyncio.run(measure(server.url, args.jobs, args.gets))
    report = {
        "machine": machine_info(),
        "load_average": load_average(),
        "clients": CLIENTS,
        **figures,
        "goal": {"get_req_per_s": 1000, "post_req_per_s": 300, "p99_ms": 100},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
