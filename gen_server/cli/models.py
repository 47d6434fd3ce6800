"""``soundry models list`` and ``soundry models pull``: the model catalog and its weights."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from gen_server.settings import Settings, child_env


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from gen_server.contract.catalog import build_catalog

    entries = [e for e in build_catalog(settings) if e.commercially_usable or not args.commercial]
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return 0
    print(f"{'id':28} {'kind':9} {'rate':>6} {'max s':>6}  licence")
    for e in entries:
        kinds = "+".join((e.kind, *e.other_kinds))  # Stable Audio: music+sfx
        print(f"{e.id:28} {kinds:9} {e.sample_rate:>6} {e.max_duration_s:>6.0f}  {e.licence_terms}")
    return 0


def cmd_models_pull(args: argparse.Namespace, settings: Settings) -> int:
    """Download a catalog model into the local cache (needs internet) and verify it loads."""
    return subprocess.call([sys.executable, "-m", "workers.pull", args.model_id], env=child_env({}))
