"""Keeps the serve command's worker process alive: restarted (with backoff) if it dies."""

from __future__ import annotations

import logging
import subprocess
import threading

from gen_server.settings import die_with_parent

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs ``argv`` as a child process and restarts it whenever it exits until :meth:`stop`."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str = "worker") -> None:
        self.argv = argv
        self.env = env
        self.name = name
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{name}", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Supervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=die_with_parent)
        logger.info("%s started (pid %d)", self.name, self._proc.pid)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                logger.warning("%s exited with %s; restarting in %.0f s", self.name, proc.returncode, backoff)
                if self._stopping.wait(backoff):
                    return
                self.restarts += 1
                self._spawn()
                backoff = min(backoff * 2, 30.0)
            elif proc is not None and proc.poll() is None:
                backoff = max(1.0, backoff * 0.9)
            self._stopping.wait(0.5)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Terminate the child (warm shutdown), killing it after ``timeout_s``."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
