"""What several commands share: the checked artifact store."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gen_server.settings import Settings

if TYPE_CHECKING:
    from gen_server.storage import ArtifactStore


def checked_store(settings: Settings) -> ArtifactStore | None:
    """The configured store, or ``None`` after printing why it is unusable (bad URL, no bucket, ...)."""
    from gen_server.errors import StorageError
    from gen_server.storage import open_store

    try:
        store = open_store(settings)
        store.check()
        return store
    except StorageError as e:
        print(f"soundry: {e.message}", file=sys.stderr)
        return None
