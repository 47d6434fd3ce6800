"""Parse YAML, JSONL and CSV prompt files into a :class:`BatchFile` whose items carry their source lines.

:func:`load_batch` reads a file (format from its suffix); :func:`parse_batch_bytes` and
:func:`parse_batch_text` parse what was sent. Positions (line, column) of every field are kept so
that :mod:`gen_server.batch.plan` can report errors where they are written; parse errors are
collected, not raised one at a time (:mod:`gen_server.batch.errors`).

File shape (YAML; JSONL and CSV carry the same fields, see ``prompts/README.md``)::

    name: game-sfx-pack                       # optional batch name
    output: "{index:03d}_{name}_v{variation}.{format}"
    defaults: {kind: sfx, duration_s: 2}      # any job field, plus n / seeds
    items:
      - name: door_creak
        prompt: a wooden door creaks open
        n: 3                                  # three variations, seeds derived from the item id
      - name: footsteps
        prompt: footsteps on gravel
        seeds: [11, 12]                       # two variations with explicit seeds
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from gen_server.batch.errors import BatchError, BatchInvalid, Collector, Pos, suggest
from gen_server.batch.template import DEFAULT_TEMPLATE, check_template, slugify
from gen_server.contract.spec import JobRequest, PostProcess, Sampling

BatchFormat = Literal["yaml", "jsonl", "csv"]

SUFFIXES: dict[str, BatchFormat] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
MAX_FILE_BYTES = 5 * 1024 * 1024

TOP_LEVEL_KEYS = ("version", "name", "description", "output", "defaults", "items")
VARIATION_KEYS = ("n", "seeds")
ITEM_ONLY_KEYS = ("name",)
OUTPUT_KEYS = ("captions",)
"""Files written beside the audio: ``captions: srt|vtt`` (speech items)."""
REQUEST_KEYS = tuple(JobRequest.model_fields)
ITEM_KEYS = (*REQUEST_KEYS, *VARIATION_KEYS, *ITEM_ONLY_KEYS, *OUTPUT_KEYS)
DEFAULT_KEYS = (*REQUEST_KEYS, *VARIATION_KEYS, *OUTPUT_KEYS)
NESTED_MODELS: dict[str, type[BaseModel]] = {"post": PostProcess, "sampling": Sampling}
# CSV cells are text: these fields stay strings, the others are read as numbers/booleans when they look so.
STRING_FIELDS = frozenset(
    {"name", "kind", "model", "prompt", "text", "voice", "language", "melody_upload", "continuation_upload"}
    | {"init_audio_upload", "format", "wav_subtype", "captions"}
)
LIST_FIELDS = frozenset({"seeds", "reference_uploads"})

_CSV_DIRECTIVE = re.compile(r"^#\s*@(?P<key>[A-Za-z_]+)\s*:\s?(?P<value>.*)$")


@dataclass(slots=True)
class BatchItem:
    """One item as written in the file (before defaults and validation).

    Attributes:
        index: 1-based position among the file's items.
        pos: Where the item starts.
        fields: The item's fields as parsed (nested mappings for ``post`` / ``sampling``).
        positions: Dotted field path (``"post.target_lufs"``) -> where that field is written.
    """

    index: int
    pos: Pos
    fields: dict[str, Any]
    positions: dict[str, Pos] = field(default_factory=dict)


@dataclass(slots=True)
class BatchFile:
    """A parsed batch file: file-level settings and its items, each with its source position."""

    source: str
    format: BatchFormat
    name: str | None = None
    output: str = DEFAULT_TEMPLATE
    output_pos: Pos | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    defaults_positions: dict[str, Pos] = field(default_factory=dict)
    items: list[BatchItem] = field(default_factory=list)

    @property
    def batch_name(self) -> str:
        """The batch name as used in file names: the ``name`` field, else the file's stem."""
        return slugify(self.name or Path(self.source).stem) or "batch"


def detect_format(filename: str) -> BatchFormat | None:
    return SUFFIXES.get(Path(filename).suffix.lower())


# ---------------------------------------------------------------------------------------------------
# parsing


def load_batch(path: Path | str) -> BatchFile:
    """Read and parse a batch file (format from its suffix).

    Raises:
        BatchInvalid: every syntax and structure error found, with lines.
    """
    data = read_batch_file(path)
    batch, errors = parse_batch_bytes(data, str(path))
    if errors:
        raise BatchInvalid(errors)
    return batch


def read_batch_file(path: Path | str) -> bytes:
    """The file's bytes.

    Raises:
        BatchInvalid: it cannot be read (the reason, as the file's one error).
    """
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BatchInvalid(
            [BatchError(str(path), None, None, None, f"cannot read file: {e.strerror or e}")]
        ) from e


def parse_batch_bytes(
    data: bytes, source: str, fmt: BatchFormat | None = None
) -> tuple[BatchFile, list[BatchError]]:
    """Decode and parse ``data`` (format: ``fmt``, else from ``source`` 's suffix).

    Returns:
        What could be parsed, and every error found.
    """
    col = Collector(source)
    fmt = fmt or detect_format(source)
    if fmt is None:
        col.add(None, None, f"unknown batch file type; use one of {', '.join(sorted(SUFFIXES))}")
        return BatchFile(source=source, format="yaml"), col.errors
    if len(data) > MAX_FILE_BYTES:
        col.add(None, None, f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return BatchFile(source=source, format=fmt), col.errors
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col.add(Pos(line), None, f"not UTF-8 text (byte {e.start})")
        return BatchFile(source=source, format=fmt), col.errors
    return parse_batch_text(text, source, fmt)


def parse_batch_text(
    text: str, source: str, fmt: BatchFormat | None = None
) -> tuple[BatchFile, list[BatchError]]:
    """Parse batch ``text`` in ``fmt`` (default: from ``source`` 's suffix)."""
    fmt = fmt or detect_format(source) or "yaml"
    col = Collector(source)
    batch = BatchFile(source=source, format=fmt)
    if fmt == "yaml":
        _parse_yaml(text, batch, col)
    elif fmt == "jsonl":
        _parse_jsonl(text, batch, col)
    else:
        _parse_csv(text, batch, col)
    if not batch.items and not col.errors:
        col.add(Pos(1), "items", "the file has no items")
    return batch, col.errors


def _apply_header(  # noqa: PLR0912 (a rule per branch; split it when it grows)
    header: Mapping[str, Any],
    positions: Mapping[str, Pos],
    batch: BatchFile,
    col: Collector,
    *,
    allowed: tuple[str, ...],
    at: Pos,
) -> None:
    """File-level settings (version, name, output, defaults) from a YAML root or JSONL/CSV header."""
    for key in header:
        if key not in allowed:
            col.add(
                positions.get(str(key), at),
                str(key),
                f"unknown file-level field{suggest(str(key), allowed)}"
                f"; file-level fields: {', '.join(allowed)}",
            )
    if "version" in header and header["version"] != 1:
        col.add(positions.get("version", at), "version", "only version 1 exists")
    if "name" in header:
        name = header["name"]
        if not isinstance(name, str) or not slugify(name):
            col.add(positions.get("name", at), "name", "batch name must be a non-empty text")
        else:
            batch.name = name
    if "description" in header and not isinstance(header["description"], str):
        col.add(positions.get("description", at), "description", "description must be text")
    if "output" in header:
        batch.output_pos = positions.get("output", at)
        if not isinstance(header["output"], str):
            col.add(
                batch.output_pos,
                "output",
                'output template must be text (in YAML, quote it: output: "{name}_{variation}.{format}")',
            )
        else:
            batch.output = header["output"]
            for message in check_template(batch.output):
                col.add(batch.output_pos, "output", message)
    if "defaults" in header:
        defaults = header["defaults"]
        if defaults is None:
            defaults = {}
        if not isinstance(defaults, dict):
            col.add(positions.get("defaults", at), "defaults", "defaults must be a mapping of job fields")
        else:
            batch.defaults = {str(k): v for k, v in defaults.items()}
            batch.defaults_positions = {
                k[len("defaults.") :]: p for k, p in positions.items() if k.startswith("defaults.")
            }
            dpos = positions.get("defaults", at)
            for key in batch.defaults:
                if key not in DEFAULT_KEYS:
                    hint = " ('name' belongs on each item)" if key == "name" else suggest(key, DEFAULT_KEYS)
                    col.add(
                        batch.defaults_positions.get(key, dpos), f"defaults.{key}", f"unknown field{hint}"
                    )


def _add_item(batch: BatchFile, raw: Any, pos: Pos, positions: dict[str, Pos], col: Collector) -> None:
    index = len(batch.items) + 1
    if not isinstance(raw, dict):
        col.add(pos, None, f"item {index} must be a mapping of fields, not {type(raw).__name__}")
        batch.items.append(BatchItem(index=index, pos=pos, fields={}, positions={}))
        return
    batch.items.append(
        BatchItem(index=index, pos=pos, fields={str(k): v for k, v in raw.items()}, positions=positions)
    )


# YAML ---------------------------------------------------------------------------------------------


def _node_pos(node: yaml.Node) -> Pos:
    return Pos(node.start_mark.line + 1, node.start_mark.column + 1)


def _walk_yaml(node: yaml.Node, path: str, out: dict[str, Pos], col: Collector) -> None:
    """Record the position of every mapping key (dotted path) and sequence element (``path.N``)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key in seen:
                col.add(_node_pos(key_node), sub, "duplicate key")
            seen.add(key)
            out.setdefault(sub, _node_pos(key_node))
            _walk_yaml(value_node, sub, out, col)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            sub = f"{path}.{i}" if path else str(i)
            out.setdefault(sub, _node_pos(child))
            _walk_yaml(child, sub, out, col)


def _parse_yaml(text: str, batch: BatchFile, col: Collector) -> None:
    try:
        loader = yaml.SafeLoader(text)  # the reader checks for forbidden characters right here
    except yaml.YAMLError as e:
        col.add(None, None, f"YAML error: {e}")
        return
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and re.match(r"\s*output\s*:\s*[^\s\"']*\{", lines[mark.line]):
            problem += ' (quote the output template: output: "{name}_{variation}.{format}")'
        col.add(Pos(mark.line + 1, mark.column + 1) if mark else None, None, f"YAML syntax error: {problem}")
        return
    except yaml.YAMLError as e:
        col.add(None, None, f"YAML error: {e}")
        return
    finally:
        loader.dispose()
    if node is None or data is None:
        col.add(Pos(1), None, "the file is empty")
        return
    positions: dict[str, Pos] = {}
    _walk_yaml(node, "", positions, col)
    if isinstance(data, list):  # a bare list of items is fine too
        data = {"items": data}
        positions = {f"items.{k}": p for k, p in positions.items()}
        positions["items"] = _node_pos(node)
    if not isinstance(data, dict):
        col.add(_node_pos(node), None, "the file must be a mapping with 'items' (or a list of items)")
        return
    top = Pos(1, 1)
    _apply_header(data, positions, batch, col, allowed=TOP_LEVEL_KEYS, at=top)
    items = data.get("items")
    if "items" not in data:
        col.add(top, "items", "missing 'items' (a list of items)")
        return
    if not isinstance(items, list):
        col.add(positions.get("items", top), "items", "'items' must be a list")
        return
    for i, raw in enumerate(items):
        prefix = f"items.{i}."
        item_positions = {k[len(prefix) :]: p for k, p in positions.items() if k.startswith(prefix)}
        _add_item(batch, raw, positions.get(f"items.{i}", top), item_positions, col)


# JSONL --------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def _json_positions(
    line_text: str, obj: Mapping[str, Any], lineno: int, prefix: str = "", start: int = 0
) -> dict[str, Pos]:
    """Columns of the keys of ``obj`` in its one-line JSON text (first match after ``start``)."""
    out: dict[str, Pos] = {}
    for key, value in obj.items():
        match = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(line_text, start)
        column = match.start() + 1 if match else None
        out[prefix + key] = Pos(lineno, column)
        if isinstance(value, dict) and match:
            out.update(_json_positions(line_text, value, lineno, f"{prefix}{key}.", match.end()))
    return out


def _parse_jsonl(text: str, batch: BatchFile, col: Collector) -> None:
    seen_object = False
    for lineno, line_text in enumerate(text.splitlines(), start=1):
        stripped = line_text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            obj = json.loads(line_text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as e:
            col.add(Pos(lineno, e.colno), None, f"JSON syntax error: {e.msg}")
            seen_object = True
            continue
        except ValueError as e:
            col.add(Pos(lineno, 1), None, str(e))
            seen_object = True
            continue
        first = not seen_object
        seen_object = True
        indent = len(line_text) - len(line_text.lstrip()) + 1
        if not isinstance(obj, dict):
            col.add(Pos(lineno, indent), None, "each line must be one JSON object")
            continue
        positions = _json_positions(line_text, obj, lineno)
        if first and ("defaults" in obj or "output" in obj or "version" in obj):
            _apply_header(
                obj,
                positions,
                batch,
                col,
                allowed=tuple(k for k in TOP_LEVEL_KEYS if k != "items"),
                at=Pos(lineno, indent),
            )
            continue
        if "defaults" in obj or "output" in obj:
            col.add(Pos(lineno, indent), None, "file-level 'defaults'/'output' belong on the first line only")
        _add_item(batch, obj, Pos(lineno, indent), positions, col)


# CSV ----------------------------------------------------------------------------------------------


def _cell_starts(line_text: str, delimiter: str = ",", quote: str = '"') -> list[int]:
    """1-based start column of each cell of a one-line CSV row (quote-aware)."""
    starts = [1]
    quoted = False
    for i, ch in enumerate(line_text):
        if ch == quote:
            quoted = not quoted
        elif ch == delimiter and not quoted:
            starts.append(i + 2)
    return starts


def _csv_value(key: str, cell: str) -> Any:
    """A CSV cell as a typed value: lists split on ``;``/``,``/spaces; numbers and booleans read."""
    cell = cell.strip()
    if key in LIST_FIELDS:
        parts = [p for p in re.split(r"[;,\s]+", cell) if p]
        return [_scalar(p) for p in parts] if key == "seeds" else parts
    if key in STRING_FIELDS:
        return cell
    return _scalar(cell)


def _scalar(cell: str) -> Any:
    lowered = cell.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(cell)
        except ValueError:
            continue
    return cell


def _parse_csv(text: str, batch: BatchFile, col: Collector) -> None:  # noqa: C901, PLR0912, PLR0915 (a rule per branch; split it when it grows)
    lines = text.splitlines(keepends=True)
    header_info: dict[str, Any] = {}
    header_pos: dict[str, Pos] = {}
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        match = _CSV_DIRECTIVE.match(lines[start].strip())
        if match:
            key, value = match["key"], match["value"].strip()
            pos = Pos(start + 1, lines[start].index("@") + 1)
            header_pos[key] = pos
            if key == "defaults":
                try:
                    header_info[key] = yaml.safe_load(value) if value else {}
                except yaml.YAMLError as e:
                    col.add(pos, "defaults", f"defaults must be a YAML/JSON mapping: {e}")
                    continue
                if isinstance(header_info[key], dict):
                    for sub in header_info[key]:
                        header_pos[f"defaults.{sub}"] = pos
            else:
                header_info[key] = int(value) if key == "version" and value.isdigit() else value
        start += 1
    if header_info:
        allowed = tuple(k for k in TOP_LEVEL_KEYS if k != "items")
        _apply_header(header_info, header_pos, batch, col, allowed=allowed, at=Pos(1, 1))
    if start >= len(lines):
        col.add(Pos(max(start, 1)), None, "no CSV header row (column names)")
        return
    reader = csv.reader(io.StringIO("".join(lines[start:])))
    try:
        columns = next(reader)
    except (StopIteration, csv.Error) as e:
        col.add(Pos(start + 1), None, f"bad CSV header: {e}")
        return
    header_line = start + 1
    header_cols = _cell_starts(lines[start].rstrip("\r\n"))
    names = [c.strip() for c in columns]
    usable: list[str | None] = []
    for i, name in enumerate(names):
        pos = Pos(header_line, header_cols[i] if i < len(header_cols) else None)
        if not name:
            col.add(pos, None, f"column {i + 1} has no name")
            usable.append(None)
        elif name in names[:i]:
            col.add(pos, name, "duplicate column")
            usable.append(None)
        elif name.split(".")[0] not in ITEM_KEYS:
            col.add(pos, name, f"unknown column{suggest(name, ITEM_KEYS)}; columns are job fields")
            usable.append(None)
        elif "." in name and name.split(".")[0] not in NESTED_MODELS:
            col.add(pos, name, f"only {', '.join(f'{k}.*' for k in NESTED_MODELS)} columns may be dotted")
            usable.append(None)
        else:
            usable.append(name)
    previous = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            col.add(Pos(start + reader.line_num), None, f"CSV syntax error: {e}")
            break
        row_line = start + previous + 1
        one_line = reader.line_num == previous + 1
        previous = reader.line_num
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        cells = _cell_starts(lines[row_line - 1].rstrip("\r\n")) if one_line else []
        if len(row) > len(names):
            col.add(
                Pos(row_line, cells[len(names)] if len(cells) > len(names) else None),
                None,
                f"row has {len(row)} cells but the header names {len(names)} columns",
            )
        fields: dict[str, Any] = {}
        positions: dict[str, Pos] = {}
        for i, (column, cell) in enumerate(zip(usable, row, strict=False)):
            if column is None or not cell.strip():
                continue
            pos = Pos(row_line, cells[i] if i < len(cells) else None)
            target = fields
            parts = column.split(".")
            for part in parts[:-1]:
                existing = target.setdefault(part, {})
                target = existing if isinstance(existing, dict) else {}
            target[parts[-1]] = _csv_value(column, cell)
            positions[column] = pos
            if len(parts) > 1:
                positions.setdefault(parts[0], pos)
        _add_item(batch, fields, Pos(row_line, 1), positions, col)
