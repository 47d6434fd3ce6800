from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gen_server.client import SoundryClient
from tests.helpers import running_server

SESSION_STEP_MS = 5.0
"""Least time per decoding step of the dev music/sfx models on the session's server (SOUNDRY_DEV_STEP_MS)."""


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("soundry-e2e")


@pytest.fixture(scope="session")
def server_url(server_dir: Path) -> Iterator[str]:
    """One real ``soundry serve`` (embedded Redis, one worker process, API + UI) for the e2e session."""
    # paced dev models (a test aid): tiny music lasts >= 5 ms per decoding step (0.25 s per second of
    # audio) on any CPU, so a test can watch a job while it runs without guessing this machine's speed.
    # Cloning open: a single-user server, where test_generate clones raw uploads (the voice library
    # and the default verified policy are tests/e2e/test_voices.py's, on a cluster of their own).
    with running_server(
        server_dir,
        SOUNDRY_ALLOW_PRIVATE_WEBHOOKS="1",
        SOUNDRY_DEV_STEP_MS=str(SESSION_STEP_MS),
        SOUNDRY_CLONING="open",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def client(server_url: str) -> Iterator[SoundryClient]:
    c = SoundryClient(server_url, timeout_s=60)
    yield c
    c.close()
