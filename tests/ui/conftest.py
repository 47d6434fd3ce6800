from __future__ import annotations

from collections.abc import Iterator

import pytest

from gen_server.client import SoundryClient
from tests.ui.server import shared_server


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real server (API at ``/v1``, UI at ``/ui/``) shared with the browser suite."""
    with shared_server(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="session")
def api(ui_server: str) -> Iterator[SoundryClient]:
    client = SoundryClient(ui_server, timeout_s=60)
    yield client
    client.close()
