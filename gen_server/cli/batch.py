"""``soundry batch``: generate every item of a batch file through a server (the runner is
:mod:`gen_server.batch_runner`)."""

from __future__ import annotations

import argparse

from gen_server.settings import Settings


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Generate every item of a batch file (YAML, JSONL, CSV) into a folder with a manifest."""
    from pathlib import Path

    from gen_server.batch_runner import run_batch

    return run_batch(
        Path(args.file),
        settings=settings,
        server=args.server,
        out_dir=Path(args.out) if args.out else None,
        concurrency=args.concurrency,
        api_key=args.api_key or settings.api_key,
        validate_only=args.validate_only,
        job_timeout_s=args.job_timeout,
    )
