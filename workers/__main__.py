"""``python -m workers [--queues speech,sfx,music] [--device cpu|cuda:0]``: one worker process."""

from __future__ import annotations

import argparse
import logging
import os
import socket


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="soundry worker", description="Run one Soundry worker process")
    parser.add_argument("--queues", default=None, help="comma-separated queues (default: all)")
    parser.add_argument("--device", default=None, help="cpu or cuda:N (default: SOUNDRY_DEVICE)")
    parser.add_argument("--name", default=None, help="worker node name")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["SOUNDRY_DEVICE"] = args.device
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from gen_server.settings import get_settings
    from workers.celery_app import app

    settings = get_settings()
    queues = args.queues or settings.queues
    name = args.name or f"soundry-{socket.gethostname()}-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "-P",
            "solo",
            "-Q",
            queues,
            "-n",
            name,
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


if __name__ == "__main__":
    main()
