"""``soundry serve`` (API, UI, embedded Redis, a worker) and ``soundry worker`` (one worker process)."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from gen_server.cli.common import checked_store
from gen_server.settings import Settings, child_env

if TYPE_CHECKING:
    from gen_server.storage import ArtifactStore

logger = logging.getLogger("soundry")


def start_retention_sweeper(store: ArtifactStore, retention_s: float, every_s: float = 3600.0) -> None:
    """Delete artifacts older than ``retention_s`` now and then every hour (daemon thread).

    A failed sweep (storage unreachable) is logged and tried again at the next round.
    """
    import threading

    from gen_server.errors import SoundryError

    def sweep() -> None:
        while True:
            try:
                removed = store.sweep(retention_s)
            except SoundryError as e:
                logger.warning("retention: sweep failed, trying again in %.0f s: %s", every_s, e.message)
            else:
                if removed:
                    logger.info("retention: removed %d expired artifact folders", removed)
            time.sleep(every_s)

    threading.Thread(target=sweep, name="retention-sweeper", daemon=True).start()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """API + UI + (embedded Redis and one worker unless told otherwise), stopped together by Ctrl-C."""
    import uvicorn

    from gen_server.auth import KeyStore, keys_path
    from gen_server.instance_secrets import builtin_defaults_in_use, checked_secrets
    from gen_server.main import create_app
    from gen_server.redis_server import EmbeddedRedis
    from gen_server.supervisor import Supervisor

    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        problems = [
            f"while {name} is set to the built-in default, which is public (unset it to have a secret "
            "generated in the data folder, or set your own)"
            for name in builtin_defaults_in_use(settings)
        ]
        if not KeyStore(keys_path(settings.data_dir)).enabled:
            problems.insert(0, "without API keys; create one with `soundry keys create --name NAME`")
        if problems:
            print(
                f"soundry: refusing to listen on {settings.host} "
                + ", and ".join(problems)
                + " (or keep SOUNDRY_HOST=127.0.0.1)",
                file=sys.stderr,
            )
            return 2
    store = checked_store(settings)
    if store is None:
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    checked_secrets(settings)  # generated on first start, before the worker starts; logged once
    embedded: EmbeddedRedis | None = None
    worker: Supervisor | None = None
    url = settings.redis_url
    try:
        if url is None:
            embedded = EmbeddedRedis(settings.data_dir / "redis").start()
            url = embedded.url
        if not args.no_worker:
            worker = Supervisor(
                [sys.executable, "-m", "workers", "--queues", settings.queues],
                env=child_env({"SOUNDRY_REDIS_URL": url}),
            ).start()
        start_retention_sweeper(store, settings.job_retention_s)
        app = create_app(settings, redis_url=url, ui=not args.no_ui)
        logger.info("Soundry on http://%s:%d (UI at /ui, API docs at /docs)", settings.host, settings.port)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        if worker is not None:
            worker.stop()
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """One worker process (a separate interpreter: the API side never imports the workers)."""
    from gen_server.redis_server import embedded_url

    if checked_store(settings) is None:
        return 2
    url = settings.redis_url or embedded_url(settings.data_dir / "redis")
    if url is None:
        print(
            "soundry: set SOUNDRY_REDIS_URL (no embedded Redis is running on this data folder)",
            file=sys.stderr,
        )
        return 2
    argv = [sys.executable, "-m", "workers"]
    if args.queues:
        argv += ["--queues", args.queues]
    if args.device:
        argv += ["--device", args.device]
    return subprocess.call(argv, env=child_env({"SOUNDRY_REDIS_URL": url}))
