"""``soundry verify``: look for this installation's watermark in an audio file and check its C2PA
Content Credentials (both verdicts are printed; the exit status follows the watermark)."""

from __future__ import annotations

import argparse
import json
import sys

from gen_server.cli.common import checked_store
from gen_server.settings import Settings


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Look for Soundry's watermark in FILE (with this installation's key) and check its C2PA manifest
    (trusting this installation's CA); exit 0 when the watermark is found."""
    from pathlib import Path

    from gen_server.content_credentials import resolve_identity
    from gen_server.errors import SoundryError
    from gen_server.instance_secrets import checked_secrets
    from gen_server.provenance import clone_of, detect_bytes

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"soundry: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    store = checked_store(settings)
    if store is None:
        return 2
    try:
        key = checked_secrets(settings).watermark_key
        found = detect_bytes(data, key, store, resolve_identity(settings), claim=args.job)
    except SoundryError as e:
        print(f"soundry: {path}: {e.message}", file=sys.stderr)
        return 2
    d = found.detection
    clone = clone_of(store, found.job_id) if found.job_id else None  # the CLI reads the store: it sees all
    if args.json:
        payload = f"{d.payload:08x}" if d.payload is not None else None
        print(
            json.dumps(
                {
                    "file": str(path),
                    "detected": d.detected,
                    "confidence": round(d.confidence, 3),
                    "payload": payload,
                    "method": found.method,
                    "job_id": found.job_id,
                    "metadata_job_id": found.metadata_job_id,
                    "cloned_voice": clone.describe() if clone else None,
                    "c2pa": {**found.c2pa.public(), "summary": found.c2pa.summary()},
                    "spans": [
                        {
                            "start_s": round(s.span.start_s, 3),
                            "end_s": round(s.span.end_s, 3),
                            "payload": f"{s.span.payload:08x}",
                            "job_id": s.job_id,
                            "confidence": round(s.span.confidence, 3),
                        }
                        for s in found.spans
                    ],
                }
            )
        )
    elif d.detected:
        job = f", job {found.job_id}" if found.job_id else " (job not in this installation's storage)"
        job += f", {clone.describe()}" if clone else ""
        matched = "the claimed job's payload" if args.job else "an issued payload"
        how = f" (matched {matched}: too weak to decode)" if d.informed else ""
        print(
            f"{path}: Soundry watermark FOUND{how}, payload {d.payload:08x}, "
            f"confidence {d.confidence:.1f}{job}"
        )
    else:
        print(f"{path}: no Soundry watermark found (confidence {d.confidence:.1f})")
    if not args.json:
        for s in found.spans:
            where = f", job {s.job_id}" if s.job_id else ""
            print(
                f"{path}: marked {s.span.start_s:.1f}-{s.span.end_s:.1f} s, payload {s.span.payload:08x}, "
                f"confidence {s.span.confidence:.1f}{where}"
            )
        print(f"{path}: {found.c2pa.summary()}")
    return 0 if d.detected else 1
