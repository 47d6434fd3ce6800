"""Output paths: the naming template of a batch's files and the checks that keep them in their folder.

The template (``output:`` in the file, default :data:`DEFAULT_TEMPLATE`) is a Python format string
over :data:`TEMPLATE_FIELDS`; it may name sub-folders but every path it gives must stay relative and
inside the output folder, and may not take the names of the batch's own files there
(:data:`MANIFEST_NAME`, :data:`SUMMARY_NAME`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from gen_server.batch.errors import suggest
from gen_server.errors import InvalidInput

DEFAULT_TEMPLATE = "{index:03d}_{name}_v{variation}.{format}"
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SUMMARY_NAME})
TEMPLATE_FIELDS = ("index", "name", "variation", "n", "seed", "format", "kind", "model", "id", "batch")

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def slugify(value: str, max_len: int = 64) -> str:
    """``value`` reduced to ``[A-Za-z0-9_-]`` (runs of anything else become ``_``), at most ``max_len``."""
    return _SLUG.sub("_", value.strip()).strip("_")[:max_len].strip("_")


_SAMPLE_VALUES: dict[str, Any] = {
    "index": 1,
    "name": "name",
    "variation": 1,
    "n": 1,
    "seed": 12345,
    "format": "wav",
    "kind": "sfx",
    "model": "model",
    "id": "0" * 16,
    "batch": "batch",
}


def check_template(template: str) -> list[str]:
    """Problems with an output naming template (empty when it is fine).

    The template is a Python format string over :data:`TEMPLATE_FIELDS`; it may name sub-folders
    but must stay a relative path inside the output folder.
    """
    problems: list[str] = []
    if not template.strip():
        return ["output template is empty"]
    if len(template) > 255:
        problems.append("output template is longer than 255 characters")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        return [f"bad output template: {e}"]
    for _, fname, spec, conversion in parsed:
        if fname is None:
            continue
        if fname not in TEMPLATE_FIELDS:
            problems.append(
                f"unknown template field '{{{fname}}}'{suggest(fname, TEMPLATE_FIELDS)}; "
                f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
        if conversion is not None:
            problems.append(f"template field '{{{fname}}}' may not use a !{conversion} conversion")
        if spec and "{" in spec:
            problems.append(f"template field '{{{fname}}}' may not nest fields in its format spec")
    if problems:
        return problems
    try:
        sample = template.format(**_SAMPLE_VALUES)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        return [f"bad output template: {e}"]
    problems.extend(check_relative_path(sample))
    return problems


def check_relative_path(rel: str) -> list[str]:
    """Problems with ``rel`` as a file path inside the output folder (empty when it is fine)."""
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        return ["output path must be relative to the output folder (no leading '/' or drive)"]
    if "\\" in rel:
        return ["output path may not contain '\\' (use '/' for sub-folders)"]
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return ["output path may not contain control characters"]
    parts = rel.split("/")
    if any(p == ".." for p in parts):
        return ["output path may not contain '..' (it must stay inside the output folder)"]
    if any(p in ("", ".") for p in parts):
        return ["output path has an empty or '.' folder name"]
    if any(len(p.encode()) > 255 for p in parts):
        return ["output path has a name longer than 255 bytes"]
    if rel in RESERVED_NAMES:
        return [f"output path '{rel}' is reserved for the batch's own files"]
    return []


def render_output(template: str, values: Mapping[str, Any]) -> str:
    """The output path for one job: the template filled in, ``.{format}`` appended when missing."""
    safe = {
        k: (v.replace("/", "_").replace("\\", "_") if isinstance(v, str) else v) for k, v in values.items()
    }
    rel = template.format(**safe)
    suffix = f".{values['format']}"
    return rel if rel.endswith(suffix) else rel + suffix


def resolve_output(out_dir: Path, rel: str) -> Path:
    """``out_dir / rel``, refusing anything that resolves outside ``out_dir`` (symlinks included).

    Raises:
        InvalidInput: when the path is unsafe.
    """
    problems = check_relative_path(rel)
    if problems:
        raise InvalidInput(f"{rel!r}: {problems[0]}", field="output")
    root = out_dir.resolve()
    path = (root / PurePosixPath(rel)).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidInput(f"output path {rel!r} escapes the output folder {root}", field="output")
    return path
