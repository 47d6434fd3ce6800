"""The examples gallery: prompts taken from the batch files in ``prompts/``.

Batch files (YAML, JSON Lines, CSV) are parsed by the project's batch parser
(``gen_server.batch.parse_batch_bytes``), so the gallery reads exactly what ``soundry batch`` reads.
Files with errors are skipped (``prompts/invalid_example.yaml`` is broken on purpose). When no
batch file offers an example for a kind, or the parser is not available, a few built-in examples
stand in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
MAX_PER_KIND = 12

BUILTIN: tuple[dict[str, Any], ...] = (
    {"kind": "music", "prompt": "lofi hip hop beat with warm piano and vinyl crackle", "duration_s": 8.0},
    {"kind": "music", "prompt": "epic orchestral trailer, big drums, rising strings", "duration_s": 10.0},
    {"kind": "sfx", "prompt": "a wooden door creaks open slowly", "duration_s": 3.0},
    {"kind": "sfx", "prompt": "rain on a tin roof with distant thunder", "duration_s": 5.0},
    {"kind": "speech", "text": "Welcome to Soundry. Everything you hear was generated on this server."},
    {"kind": "speech", "text": "The quick brown fox jumps over the lazy dog near the river bank."},
)


def example_of(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """A gallery entry (``kind``, ``prompt`` + ``duration_s`` or ``text``) from a job's fields."""
    kind = fields.get("kind")
    if kind not in ("music", "sfx", "speech"):
        return None
    text = fields.get("text") if kind == "speech" else fields.get("prompt")
    text = text or fields.get("prompt") or fields.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    if kind == "speech":
        return {"kind": kind, "text": text.strip()}
    try:
        duration = float(fields.get("duration_s") or 8.0)
    except (TypeError, ValueError):
        duration = 8.0
    return {"kind": kind, "prompt": text.strip(), "duration_s": duration}


def _from_batch_files(folder: Path) -> list[dict[str, Any]]:
    try:
        from gen_server.batch import SUFFIXES, parse_batch_bytes
    except ImportError as e:  # the batch module is optional for the gallery
        logger.info("examples: batch parser unavailable (%s); using built-in examples", e)
        return []
    found: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        try:
            batch, errors = parse_batch_bytes(path.read_bytes(), path.name)
        except (OSError, ValueError) as e:
            logger.warning("examples: cannot read %s: %s", path, e)
            continue
        if errors:
            logger.info("examples: skipping %s (%d errors)", path.name, len(errors))
            continue
        for item in batch.items:
            example = example_of({**batch.defaults, **item.fields})
            if example is not None and example not in found:
                found.append(example)
    return found


def load_examples(prompts_dir: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Examples per kind (``music``, ``sfx``, ``speech``), at most :data:`MAX_PER_KIND` each."""
    found: dict[str, list[dict[str, Any]]] = {"music": [], "sfx": [], "speech": []}
    for example in _from_batch_files(PROMPTS_DIR if prompts_dir is None else prompts_dir):
        if len(found[example["kind"]]) < MAX_PER_KIND:
            found[example["kind"]].append(example)
    for kind, examples in found.items():
        if not examples:
            examples.extend(dict(e) for e in BUILTIN if e["kind"] == kind)
    return found
