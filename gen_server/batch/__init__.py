"""Batch files: parse YAML, JSONL and CSV prompt files and validate them into a plan of jobs.

Pure code (no network), one module per concern, each importing only those before it:

- :mod:`~gen_server.batch.errors`: positions in a file, :class:`BatchError` and :class:`BatchInvalid`.
- :mod:`~gen_server.batch.template`: the output naming template and the checks on output paths.
- :mod:`~gen_server.batch.parse`: the file formats, parsed into a :class:`BatchFile` with positions.
- :mod:`~gen_server.batch.plan`: validation against the catalog, variations, seeds, ids, spec hashes.
- :mod:`~gen_server.batch.manifest`: the ``manifest.jsonl`` lines of finished files.
- :mod:`~gen_server.batch.service`: ``/v1/batches`` records in Redis (not imported here: it needs the
  job service; the CLI and the UI read files without it).

The names below are re-exported for convenience; code in this project imports them from their module.
"""

from gen_server.batch.errors import BatchError, BatchInvalid, Pos
from gen_server.batch.manifest import manifest_entry, manifest_lines, read_manifest
from gen_server.batch.parse import (
    MAX_FILE_BYTES,
    SUFFIXES,
    BatchFile,
    BatchFormat,
    BatchItem,
    load_batch,
    parse_batch_bytes,
    parse_batch_text,
)
from gen_server.batch.plan import (
    BatchPlan,
    PlannedJob,
    deep_merge,
    derived_seed,
    idempotency_key,
    plan_batch,
    spec_hash,
    validate_batch_bytes,
    validate_batch_file,
)
from gen_server.batch.template import (
    DEFAULT_TEMPLATE,
    MANIFEST_NAME,
    SUMMARY_NAME,
    check_template,
    render_output,
    resolve_output,
    slugify,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "MANIFEST_NAME",
    "MAX_FILE_BYTES",
    "SUFFIXES",
    "SUMMARY_NAME",
    "BatchError",
    "BatchFile",
    "BatchFormat",
    "BatchInvalid",
    "BatchItem",
    "BatchPlan",
    "PlannedJob",
    "Pos",
    "check_template",
    "deep_merge",
    "derived_seed",
    "idempotency_key",
    "load_batch",
    "manifest_entry",
    "manifest_lines",
    "parse_batch_bytes",
    "parse_batch_text",
    "plan_batch",
    "read_manifest",
    "render_output",
    "resolve_output",
    "slugify",
    "spec_hash",
    "validate_batch_bytes",
    "validate_batch_file",
]
