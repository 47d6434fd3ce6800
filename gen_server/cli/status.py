"""``soundry status``: queues, workers and job totals of a running deployment, from its Redis."""

from __future__ import annotations

import argparse
import sys
import time

from gen_server.settings import Settings


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Queue depths, live workers (memory, loaded models) and job totals from the shared Redis."""
    import redis

    from gen_server.metrics import hash_text, live_workers, queue_depths
    from gen_server.records import keys
    from gen_server.redis_server import embedded_url
    from gen_server.storage import storage_location

    url = args.redis_url or settings.redis_url or embedded_url(settings.data_dir / "redis")
    if url is None:
        print("soundry: set SOUNDRY_REDIS_URL (or --redis-url) to the server's Redis", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        depths = queue_depths(client)
        workers = live_workers(client)
        totals = hash_text(client, keys.STATS_JOBS)
    except redis.ConnectionError as e:
        print(f"soundry: cannot reach Redis at {url}: {e}", file=sys.stderr)
        return 1
    here = storage_location(settings)
    print("queues:  " + "  ".join(f"{q}={n}" for q, n in depths.items()))
    print(f"storage: {here}")
    print(f"workers: {len(workers)}")
    for name, info in sorted(workers.items()):
        age = time.time() - float(info["seen_at"])
        rss_mb = int(info.get("rss_bytes", 0)) / 2**20
        models = ", ".join(info.get("models", [])) or "none"
        print(f"  {name}: queues {info['queues']}, {rss_mb:.0f} MiB, models: {models} (seen {age:.0f} s ago)")
        storage = info.get("storage")
        if storage and storage != here:  # the classic scale-out mistake: writing where the API cannot read
            print(f"    storage {storage} (not this host's {here}: make it the same on every host)")
    print("jobs:    " + ("  ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "none finished yet"))
    return 0
