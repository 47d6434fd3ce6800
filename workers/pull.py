"""``soundry models pull ID``: fetch a model's weights into the local cache and verify they load."""

from __future__ import annotations

import logging
import sys

from gen_server.contract.catalog import build_catalog
from gen_server.errors import SoundryError
from gen_server.settings import get_settings
from workers.backends.registry import create_backend

logger = logging.getLogger(__name__)


def pull(model_id: str) -> int:
    """Load ``model_id`` once with downloads allowed; the library caches what it fetched."""
    settings = get_settings().model_copy(update={"allow_downloads": True})
    entry = build_catalog(settings).get(model_id)
    backend = create_backend(entry, settings)
    try:
        backend.load()
    except SoundryError as e:
        print(f"soundry: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:  # network errors from the hub clients
        print(f"soundry: could not download '{model_id}' from {entry.source}: {e}", file=sys.stderr)
        print(
            "         run this on a machine with internet, then copy the cache or the checkpoint "
            f"folder to {settings.resolved_models_dir / model_id}",
            file=sys.stderr,
        )
        return 1
    finally:
        backend.unload()
    print(f"{model_id}: weights cached and verified (loaded from {entry.source})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(pull(sys.argv[1]))
