"""Plan a parsed batch file: validate every item and expand its variations into jobs.

:func:`plan_batch` checks every item against the job contract and the catalog and expands variations
into :class:`PlannedJob` s with deterministic ids, seeds, spec hashes and output paths; every error
is reported with the line (and column) where the field is written, on the item or in the file's
``defaults``. :func:`validate_batch_bytes` / :func:`validate_batch_file` parse and plan in one pass.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gen_server.batch.errors import BatchError, BatchInvalid, Collector, Pos, suggest
from gen_server.batch.parse import (
    ITEM_KEYS,
    NESTED_MODELS,
    REQUEST_KEYS,
    BatchFile,
    BatchFormat,
    BatchItem,
    parse_batch_bytes,
    read_batch_file,
)
from gen_server.batch.template import check_relative_path, check_template, render_output, slugify
from gen_server.contract.catalog import Catalog
from gen_server.contract.spec import MAX_SEED, JobRequest, build_spec
from gen_server.errors import InvalidInput, dotted_field

MAX_VARIATIONS = 100
MAX_JOBS = 10_000
CAPTION_FORMATS = ("srt", "vtt")
"""What an item's ``captions`` may ask for (written beside the audio)."""


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
    captions: str | None = None
    """``srt``/``vtt``: the speech's captions go beside the audio (:attr:`captions_file`)."""

    @property
    def captions_file(self) -> str | None:
        """The captions' output path: the audio's, with the captions format's extension."""
        if self.captions is None:
            return None
        stem, _, _ = self.file.rpartition(".")
        return f"{stem or self.file}.{self.captions}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.variation} (seed {self.seed})"


@dataclass(slots=True)
class BatchPlan:
    """All jobs of a valid batch file, in file order."""

    source: str
    name: str
    jobs: list[PlannedJob]


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
        return f"unknown field{suggest(leaf, known)}; {parent} fields: {', '.join(known)}"
    if kind == "missing" and dotted == "kind":
        return "missing 'kind' (speech, sfx or music): set it on the item or in defaults"
    if kind == "missing":
        return "required field is missing"
    return str(err.get("msg", "invalid value"))


def _variations(
    merged_var: Mapping[str, Any], loc: _Locator, col: Collector, prefix: str
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


def plan_batch(  # noqa: C901, PLR0912, PLR0915 (a rule per branch; split it when it grows)
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
    col = Collector(batch.source)
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
                col.add(item.positions.get(key, item.pos), key, f"unknown field{suggest(key, ITEM_KEYS)}")
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
                dotted = dotted_field(err["loc"], "item")
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
        captions = item.fields.get("captions", batch.defaults.get("captions"))
        if captions is not None:
            where = "captions" if "captions" in item.fields else "defaults.captions"
            if captions not in CAPTION_FORMATS:
                col.add(
                    loc("captions"),
                    where,
                    f"captions must be one of {', '.join(CAPTION_FORMATS)}, not {captions!r}",
                )
            elif spec.kind != "speech":
                col.add(loc("captions"), where, f"captions are for speech items; this item is {spec.kind}")
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
                    captions=captions,
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
    return validate_batch_bytes(
        read_batch_file(path),
        str(path),
        catalog,
        max_prompt_chars=max_prompt_chars,
        max_text_chars=max_text_chars,
    )
