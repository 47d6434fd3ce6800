"""What every tiny checkpoint writer shares: the manifest, the seed, and atomic, idempotent folders.

Every writer is deterministic (fixed seed, caller's RNG state untouched), idempotent (a folder
holding a matching ``tiny.json`` manifest is left alone) and atomic (written to a temporary sibling
folder, then moved in place with ``os.replace``): :func:`write_atomically`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

MANIFEST = "tiny.json"
FORMAT_VERSION = 2
SEED = 1234
TINY_CODEBOOK_SIZE = 64
"""Codebook size of the tiny audiocraft codecs and of the tiny XTTS GPT's audio codes."""


def _is_complete(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == manifest)


def write_atomically(folder: Path, manifest: dict[str, Any], fill: Callable[[Path], None]) -> Path:
    """Create ``folder`` by filling a temporary sibling and moving it in place.

    Args:
        folder: Final folder.
        manifest: Written last as ``tiny.json``; a folder with an equal manifest counts as complete.
        fill: Writes the checkpoint files into the folder it is given.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    if _is_complete(folder, manifest):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if folder.exists() and not _is_complete(folder, manifest):
            # stale or half-written by an older version: move it aside, then drop it
            stale = folder.parent / f".{folder.name}.stale-{uuid.uuid4().hex[:8]}"
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            # another process finished first (the target is a non-empty folder now)
            if not _is_complete(folder, manifest):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote tiny checkpoint %s", folder)
    return folder
