"""``python -m workers [--queues speech,sfx,music] [--device cpu|cuda:0]``: one worker process.

One process per device, Celery's threads pool (:func:`task_threads` threads): each thread holds one
job (prefetch multiplier 1, so the process reserves at most that many messages) and hands its model
call to the batcher thread (workers/batcher.py), which owns the models. No fork: CUDA is safe.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import socket
import time

logger = logging.getLogger(__name__)

PRELOADED = ("torch",)
"""Imported before any task thread runs (see :func:`preload`)."""


def preload(modules: tuple[str, ...] = PRELOADED) -> None:
    """Import heavy shared libraries in the main thread, before Celery starts its task threads.

    The batcher thread otherwise imports torch lazily with the first model while task threads run
    SciPy on finished clips; SciPy's array-API checks look up ``sys.modules['torch']`` and fail on
    the half-imported module (``partially initialized module 'torch' has no attribute 'Tensor'``).
    A first import also holds the GIL through long native loads, which would delay lease renewal.
    Importing torch does not initialise CUDA. Modules that are not installed are skipped.
    """
    for name in modules:
        if importlib.util.find_spec(name) is None:
            continue
        started = time.perf_counter()
        importlib.import_module(name)
        logger.info("imported %s in %.1f s", name, time.perf_counter() - started)


SPEECH_THREADS = 2
"""Task threads of a speech-only worker: one job at the model while the previous one is finished."""


def task_threads(queues: str, max_batch: int) -> int:
    """How many jobs a worker consuming ``queues`` holds at once.

    Music and sound-effect jobs batch, so such a worker holds up to ``max_batch`` to fill a model
    call. Speech jobs run one model call each on the batcher thread, so a speech-only worker holds
    just :data:`SPEECH_THREADS`: with several workers, the rest stay in Redis for an idle one.
    """
    batching = {"music", "sfx"} & {q.strip() for q in queues.split(",")}
    return max_batch if batching else min(SPEECH_THREADS, max_batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="soundry worker", description="Run one Soundry worker process")
    parser.add_argument("--queues", default=None, help="comma-separated queues (default: all)")
    parser.add_argument("--device", default=None, help="cpu or cuda:N (default: SOUNDRY_DEVICE)")
    parser.add_argument("--name", default=None, help="worker node name")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["SOUNDRY_DEVICE"] = args.device
    if args.queues:  # what this worker reports too (soundry status, /metrics)
        os.environ["SOUNDRY_QUEUES"] = args.queues
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from gen_server.instance_secrets import checked_secrets
    from gen_server.settings import checked_settings

    settings = checked_settings()
    checked_secrets(settings)  # generated into the data folder on first start unless set; logged once
    preload()
    from workers.celery_app import app

    queues = settings.queues
    name = args.name or f"soundry-{socket.gethostname()}-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "-P",
            "threads",
            "-c",
            str(task_threads(queues, settings.max_batch)),
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
