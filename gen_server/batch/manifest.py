"""The manifest of a batch's output folder: one JSON line per finished file (``manifest.jsonl``).

Written by ``soundry batch`` next to the files and by ``/v1/batches/{id}/archive`` into the zip; the
CLI reads it back to skip items already done when a run is resumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gen_server.batch.plan import PlannedJob
from gen_server.contract.result import JobView


def manifest_entry(job: PlannedJob, job_view: JobView) -> dict[str, Any]:
    """The manifest line of a finished job (``job_view``: the API's view of it, with its result)."""
    view = job_view.public()
    result = view.get("result") or {}
    entry = {
        "item_id": job.item_id,
        "line": job.line,
        "index": job.index,
        "name": job.name,
        "variation": job.variation,
        "seed": job.seed,
        "file": job.file,
        "spec_hash": job.spec_hash,
        "job_id": view.get("id"),
        "sha256": result.get("sha256"),
        "duration_s": result.get("duration_s"),
        "sample_rate": result.get("sample_rate"),
        "channels": result.get("channels"),
        "format": result.get("format"),
        "model": result.get("model", job.model),
        "watermark_payload": result.get("watermark_payload"),
        "request": job.request,
        "spec": view.get("spec"),
    }
    if job.captions_file is not None:
        entry["captions"] = job.captions_file
    # what an editor needs (music, sfx): tempo, beats, key, loudness, the loop's cut and seam
    entry.update({k: result[k] for k in ("analysis", "tempo", "loop", "warnings") if result.get(k)})
    return entry


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Item id -> its last manifest entry; unreadable lines (an interrupted write) are skipped."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("item_id"), str):
            entries[entry["item_id"]] = entry
    return entries


def manifest_lines(entries: list[dict[str, Any]]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
