"""Batch files: parse YAML, JSONL and CSV prompt files and validate them into a plan of jobs.

Pure code (no network): :func:`load_batch` parses a file into a :class:`BatchFile` whose items carry
their source lines; :func:`plan_batch` checks every item against the catalog and expands variations
into :class:`PlannedJob` s with deterministic ids, seeds, spec hashes and output paths. Every problem
is collected as a :class:`BatchError` (file, line, column, field, message) and raised together in
one :class:`BatchInvalid`, so nothing is submitted from a file with any error.

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
import difflib
import hashlib
import io
import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from gen_server.contract.catalog import Catalog
from gen_server.contract.spec import MAX_SEED, JobRequest, PostProcess, Sampling, build_spec
from gen_server.errors import InvalidInput

BatchFormat = Literal["yaml", "jsonl", "csv"]

SUFFIXES: dict[str, BatchFormat] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
DEFAULT_TEMPLATE = "{index:03d}_{name}_v{variation}.{format}"
MAX_VARIATIONS = 100
MAX_JOBS = 10_000
MAX_FILE_BYTES = 5 * 1024 * 1024
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SUMMARY_NAME})

TOP_LEVEL_KEYS = ("version", "name", "description", "output", "defaults", "items")
VARIATION_KEYS = ("n", "seeds")
ITEM_ONLY_KEYS = ("name",)
REQUEST_KEYS = tuple(JobRequest.model_fields)
ITEM_KEYS = (*REQUEST_KEYS, *VARIATION_KEYS, *ITEM_ONLY_KEYS)
DEFAULT_KEYS = (*REQUEST_KEYS, *VARIATION_KEYS)
TEMPLATE_FIELDS = ("index", "name", "variation", "n", "seed", "format", "kind", "model", "id", "batch")
NESTED_MODELS: dict[str, type[BaseModel]] = {"post": PostProcess, "sampling": Sampling}
# CSV cells are text: these fields stay strings, the others are read as numbers/booleans when they look so.
STRING_FIELDS = frozenset(
    {"name", "kind", "model", "prompt", "text", "voice", "language", "melody_upload", "continuation_upload"}
    | {"format", "wav_subtype"}
)
LIST_FIELDS = frozenset({"seeds", "reference_uploads"})

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
_CSV_DIRECTIVE = re.compile(r"^#\s*@(?P<key>[A-Za-z_]+)\s*:\s?(?P<value>.*)$")


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a source file: 1-based line and column (column ``None`` when unknown)."""

    line: int
    column: int | None = None


@dataclass(frozen=True, slots=True)
class BatchError:
    """One problem in a batch file, reported as ``file:line:column: field: message``."""

    file: str
    line: int | None
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class BatchInvalid(InvalidInput):
    """A batch file with one or more errors; ``errors`` lists all of them, sorted by line."""

    code = "invalid_batch"

    def __init__(self, errors: list[BatchError]) -> None:
        self.errors = sorted(set(errors), key=lambda e: (e.line or 0, e.column or 0, e.message))
        count = len(self.errors)
        first = str(self.errors[0]) if self.errors else ""
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in batch file; first: {first}", field="file"
        )


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


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One variation of one item, ready to submit.

    Attributes:
        item_id: Deterministic id: hash of the item's identity in the file and the variation.
        request: The ``POST /v1/jobs`` body (JSON-ready), seed and resolved model included.
        spec_hash: SHA-256 of the resolved job spec (without job id and owner): same hash, same audio.
        file: Output path relative to the output folder (POSIX separators).
    """

    item_id: str
    index: int
    line: int
    name: str
    variation: int
    n: int
    seed: int
    kind: str
    model: str
    request: dict[str, Any]
    spec_hash: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.variation} (seed {self.seed})"


@dataclass(slots=True)
class BatchPlan:
    """All jobs of a valid batch file, in file order."""

    source: str
    name: str
    jobs: list[PlannedJob]


class _Collector:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[BatchError] = []

    def add(self, pos: Pos | None, fld: str | None, message: str) -> None:
        self.errors.append(
            BatchError(self.source, pos.line if pos else None, pos.column if pos else None, fld, message)
        )


# ---------------------------------------------------------------------------------------------------
# small helpers


def slugify(value: str, max_len: int = 64) -> str:
    """``value`` reduced to ``[A-Za-z0-9_-]`` (runs of anything else become ``_``), at most ``max_len``."""
    return _SLUG.sub("_", value.strip()).strip("_")[:max_len].strip("_")


def _suggest(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _hash_hex(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def spec_hash(spec_fields: Mapping[str, Any]) -> str:
    """SHA-256 of a resolved spec's canonical JSON (callers drop ``job_id`` and ``owner`` first)."""
    return hashlib.sha256(json.dumps(spec_fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotency_key(job: PlannedJob) -> str:
    """The ``Idempotency-Key`` of a planned job (CLI and API alike): same item and spec, same job."""
    return f"batch-{job.item_id}-{job.spec_hash[:32]}"


def derived_seed(identity: str, variation: int) -> int:
    """The seed of a variation the file gives no seed for: stable across runs, in ``[0, MAX_SEED]``."""
    digest = hashlib.sha256(f"soundry-batch-seed\x00{identity}\x00{variation}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)


def detect_format(filename: str) -> BatchFormat | None:
    return SUFFIXES.get(Path(filename).suffix.lower())


# ---------------------------------------------------------------------------------------------------
# parsing


def load_batch(path: Path | str) -> BatchFile:
    """Read and parse a batch file (format from its suffix).

    Raises:
        BatchInvalid: every syntax and structure error found, with lines.
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BatchInvalid(
            [BatchError(source, None, None, None, f"cannot read file: {e.strerror or e}")]
        ) from e
    batch, errors = parse_batch_bytes(data, source)
    if errors:
        raise BatchInvalid(errors)
    return batch


def parse_batch_bytes(
    data: bytes, source: str, fmt: BatchFormat | None = None
) -> tuple[BatchFile, list[BatchError]]:
    """Decode and parse ``data`` (format: ``fmt``, else from ``source`` 's suffix).

    Returns:
        What could be parsed, and every error found.
    """
    col = _Collector(source)
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
    col = _Collector(source)
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


def _apply_header(
    header: Mapping[str, Any],
    positions: Mapping[str, Pos],
    batch: BatchFile,
    col: _Collector,
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
                f"unknown file-level field{_suggest(str(key), allowed)}"
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
                    hint = " ('name' belongs on each item)" if key == "name" else _suggest(key, DEFAULT_KEYS)
                    col.add(
                        batch.defaults_positions.get(key, dpos), f"defaults.{key}", f"unknown field{hint}"
                    )


def _add_item(batch: BatchFile, raw: Any, pos: Pos, positions: dict[str, Pos], col: _Collector) -> None:
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


def _walk_yaml(node: yaml.Node, path: str, out: dict[str, Pos], col: _Collector) -> None:
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


def _parse_yaml(text: str, batch: BatchFile, col: _Collector) -> None:
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


def _parse_jsonl(text: str, batch: BatchFile, col: _Collector) -> None:
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


def _parse_csv(text: str, batch: BatchFile, col: _Collector) -> None:
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
            col.add(pos, name, f"unknown column{_suggest(name, ITEM_KEYS)}; columns are job fields")
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


# ---------------------------------------------------------------------------------------------------
# output template


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
                f"unknown template field '{{{fname}}}'{_suggest(fname, TEMPLATE_FIELDS)}; "
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


# ---------------------------------------------------------------------------------------------------
# validation and planning


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, nested dicts merged key by key (neither input is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _Locator:
    """Finds where a (dotted) field of an item is written: on the item, else in the defaults."""

    def __init__(self, batch: BatchFile, item: BatchItem) -> None:
        self.batch = batch
        self.item = item

    def __call__(self, dotted: str) -> Pos:
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in self.item.positions:
                return self.item.positions[key]
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in self.batch.defaults_positions and self._from_defaults(parts[:n]):
                return self.batch.defaults_positions[key]
        return self.item.pos

    def _from_defaults(self, parts: list[str]) -> bool:
        node: Any = self.item.fields
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return True
            node = node[part]
        return False


def _pydantic_message(err: Mapping[str, Any], dotted: str) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        parent = dotted.split(".")[0]
        model = NESTED_MODELS.get(parent)
        known = tuple(model.model_fields) if model else REQUEST_KEYS
        leaf = dotted.split(".")[-1]
        return f"unknown field{_suggest(leaf, known)}; {parent} fields: {', '.join(known)}"
    if kind == "missing" and dotted == "kind":
        return "missing 'kind' (speech, sfx or music): set it on the item or in defaults"
    if kind == "missing":
        return "required field is missing"
    return str(err.get("msg", "invalid value"))


def _variations(
    merged_var: Mapping[str, Any], loc: _Locator, col: _Collector, prefix: str
) -> tuple[list[int | None], bool]:
    """The seeds of an item's variations (``None``: derive it); ``ok`` False when invalid."""
    n, seeds, seed = merged_var.get("n"), merged_var.get("seeds"), merged_var.get("seed")
    ok = True
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        col.add(loc("seed"), f"{prefix}seed", f"seed must be a whole number from 0 to {MAX_SEED}")
        ok = False
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_VARIATIONS):
        col.add(loc("n"), f"{prefix}n", f"n must be a whole number from 1 to {MAX_VARIATIONS}")
        ok = False
    if seeds is not None:
        if n is not None:
            col.add(loc("seeds"), f"{prefix}seeds", "give n or seeds, not both (seeds set the count)")
            ok = False
        if seed is not None:
            col.add(loc("seeds"), f"{prefix}seeds", "give seed or seeds, not both")
            ok = False
        if not isinstance(seeds, list) or not seeds:
            col.add(loc("seeds"), f"{prefix}seeds", "seeds must be a non-empty list of whole numbers")
            return [], False
        if len(seeds) > MAX_VARIATIONS:
            col.add(loc("seeds"), f"{prefix}seeds", f"at most {MAX_VARIATIONS} seeds per item")
            ok = False
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                col.add(
                    loc("seeds"), f"{prefix}seeds", f"seed {s!r} is not a whole number from 0 to {MAX_SEED}"
                )
                return [], False
        if len(set(seeds)) != len(seeds):
            col.add(loc("seeds"), f"{prefix}seeds", "seeds repeat (each variation needs its own seed)")
            ok = False
        return list(seeds), ok
    count = n if ok and isinstance(n, int) else 1
    if isinstance(seed, int) and not isinstance(seed, bool):
        if seed >= 0 and seed + count - 1 <= MAX_SEED:
            return [seed + i for i in range(count)], ok
        return [seed], ok  # JobRequest validation reports the range error
    return [None] * count, ok


def plan_batch(
    batch: BatchFile,
    catalog: Catalog,
    *,
    max_prompt_chars: int = 2000,
    max_text_chars: int = 5000,
    prior_errors: list[BatchError] | None = None,
) -> BatchPlan:
    """Validate every item against the job contract and the catalog; expand variations into jobs.

    Raises:
        BatchInvalid: with every error found (``prior_errors`` from parsing included).
    """
    col = _Collector(batch.source)
    col.errors.extend(prior_errors or [])
    jobs: list[PlannedJob] = []
    names: dict[str, int] = {}
    identities: dict[str, int] = {}
    outputs: dict[str, tuple[int, str]] = {}
    template_ok = not check_template(batch.output)
    batch_slug = batch.batch_name
    for item in batch.items:
        loc = _Locator(batch, item)
        before = len(col.errors)
        misspelt: set[str] = set()  # fields an unknown key probably meant: no second error about them
        for key in item.fields:
            if key not in ITEM_KEYS:
                col.add(item.positions.get(key, item.pos), key, f"unknown field{_suggest(key, ITEM_KEYS)}")
                misspelt.update(difflib.get_close_matches(key, ITEM_KEYS, n=1, cutoff=0.6))
        raw_name = item.fields.get("name")
        name: str | None = None
        if raw_name is not None:
            name = slugify(str(raw_name)) if isinstance(raw_name, str | int) else None
            if not name:
                col.add(loc("name"), "name", "name must be text with letters or digits")
            elif name.lower() in names:
                col.add(
                    loc("name"), "name", f"duplicate name '{name}' (first used at line {names[name.lower()]})"
                )
            else:
                names[name.lower()] = item.pos.line
        defaults_req = {k: v for k, v in batch.defaults.items() if k in REQUEST_KEYS}
        item_req = {k: v for k, v in item.fields.items() if k in REQUEST_KEYS}
        merged = deep_merge(defaults_req, item_req)
        # variations: the item's own n/seeds/seed win over the defaults' as a group
        var_source = item.fields if any(k in item.fields for k in ("n", "seeds", "seed")) else batch.defaults
        var_prefix = "" if var_source is item.fields else "defaults."
        seeds, var_ok = _variations(
            {k: var_source.get(k) for k in ("n", "seeds", "seed")}, loc, col, var_prefix
        )
        first_seed = seeds[0] if seeds else None
        merged.pop("seed", None)
        try:
            req = JobRequest.model_validate({**merged, "seed": first_seed if first_seed is not None else 0})
        except ValidationError as e:
            for err in e.errors():
                dotted = ".".join(str(p) for p in err["loc"]) or "item"
                col.add(loc(dotted), dotted, _pydantic_message(err, dotted))
            continue
        try:
            spec = build_spec(
                req,
                catalog,
                job_id="batch-validate",
                max_prompt_chars=max_prompt_chars,
                max_text_chars=max_text_chars,
            )
        except InvalidInput as e:
            fld = e.field or "item"
            if fld not in misspelt:
                col.add(loc(fld), fld, e.message)
            continue
        if len(col.errors) > before or not var_ok or not seeds:
            continue
        if name is None:
            name = slugify(" ".join(spec.prompt.split()[:6]), max_len=40) or f"item{item.index}"
            content = f"{spec.kind}:{spec.prompt}"
            occurrence = identities.get(content, 0) + 1
            identities[content] = occurrence
            identity = f"content:{content}#{occurrence}"
        else:
            identity = f"name:{name.lower()}"
        base_request = req.model_dump(mode="json", exclude_unset=True)
        base_request["model"] = spec.model
        for variation, given_seed in enumerate(seeds, start=1):
            seed = given_seed if given_seed is not None else derived_seed(identity, variation)
            item_id = _hash_hex("soundry-batch-item", identity, str(variation))[:16]
            vspec = spec.model_copy(update={"seed": seed})
            request = {**base_request, "seed": seed}
            digest = spec_hash(vspec.model_dump(mode="json", exclude={"job_id", "owner"}))
            rel = ""
            if template_ok:
                values = {
                    "index": item.index,
                    "name": name,
                    "variation": variation,
                    "n": len(seeds),
                    "seed": seed,
                    "format": spec.format,
                    "kind": spec.kind,
                    "model": spec.model,
                    "id": item_id,
                    "batch": batch_slug,
                }
                try:
                    rel = render_output(batch.output, values)
                except (ValueError, TypeError, KeyError, IndexError) as e:
                    col.add(
                        batch.output_pos or item.pos, "output", f"output template fails for this item: {e}"
                    )
                    break
                problems = check_relative_path(rel)
                if problems:
                    col.add(item.pos, "output", f"output file {rel!r}: {problems[0]}")
                    break
                other = outputs.get(rel.lower())
                if other is not None:
                    col.add(
                        item.pos,
                        "output",
                        f"output file '{rel}' is also written by {other[1]} at line {other[0]}; "
                        "put {variation} or {seed} (and {name} or {index}) in the output template",
                    )
                    break
                outputs[rel.lower()] = (item.pos.line, f"'{name}' v{variation}")
            jobs.append(
                PlannedJob(
                    item_id=item_id,
                    index=item.index,
                    line=item.pos.line,
                    name=name,
                    variation=variation,
                    n=len(seeds),
                    seed=seed,
                    kind=spec.kind,
                    model=spec.model,
                    request=request,
                    spec_hash=digest,
                    file=rel,
                )
            )
    if len(jobs) > MAX_JOBS:
        col.add(None, "items", f"the file expands to {len(jobs)} jobs; the limit is {MAX_JOBS}")
    if col.errors:
        raise BatchInvalid(col.errors)
    return BatchPlan(source=batch.source, name=batch_slug, jobs=jobs)


def validate_batch_bytes(
    data: bytes,
    source: str,
    catalog: Catalog,
    *,
    fmt: BatchFormat | None = None,
    max_prompt_chars: int = 2000,
    max_text_chars: int = 5000,
) -> BatchPlan:
    """Parse and plan in one pass, reporting parse and item errors together.

    Raises:
        BatchInvalid: every error found.
    """
    batch, errors = parse_batch_bytes(data, source, fmt)
    if errors and not batch.items:
        raise BatchInvalid(errors)
    return plan_batch(
        batch, catalog, max_prompt_chars=max_prompt_chars, max_text_chars=max_text_chars, prior_errors=errors
    )


def validate_batch_file(
    path: Path | str, catalog: Catalog, *, max_prompt_chars: int = 2000, max_text_chars: int = 5000
) -> BatchPlan:
    """:func:`validate_batch_bytes` for a file on disk (format from its suffix)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BatchInvalid(
            [BatchError(source, None, None, None, f"cannot read file: {e.strerror or e}")]
        ) from e
    return validate_batch_bytes(
        data, source, catalog, max_prompt_chars=max_prompt_chars, max_text_chars=max_text_chars
    )


# ---------------------------------------------------------------------------------------------------
# manifest


def manifest_entry(job: PlannedJob, view: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest line of a finished job (``view``: the API's job JSON, with its result)."""
    result = view.get("result") or {}
    return {
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
