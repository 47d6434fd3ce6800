"""``soundry audit`` (the voice audit log) and ``soundry voices protect|protected`` (the deny list)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from gen_server.settings import Settings


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Print DATA_DIR/audit/voices.jsonl: a table, or the JSON lines as written (``--json``)."""
    from gen_server.voices import audit

    path = audit.audit_path(settings.data_dir)
    entries = list(audit.read(path))
    if args.voice:
        entries = [e for e in entries if e.get("voice_id") == args.voice]
    if args.json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
        return 0
    if not entries:
        print(f"no voice events in {path}")
        return 0
    print(f"{'time (UTC)':19}  {'event':8}  {'voice':32}  {'key':12}  {'consent sha256':16}  outcome")
    for e in entries:
        when = datetime.fromtimestamp(float(e["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        sha = (e.get("consent_sha256") or "")[:16]
        key = e.get("key_id") or "-"
        print(f"{when:19}  {e['event']:8}  {e['voice_id']:32}  {key:12}  {sha:16}  {_outcome(e)}")
    return 0


def _outcome(entry: dict[str, object]) -> str:
    verdict = entry.get("verdict")
    if not isinstance(verdict, dict):
        return str(entry.get("state") or "")
    if verdict.get("error"):
        return f"error: {verdict['error']}"
    failed = [c for c in verdict.get("checks", []) if isinstance(c, dict) and not c.get("passed")]
    if not failed:
        return str(entry.get("state") or "accepted")
    parts = []
    for c in failed:
        score = c.get("score")
        parts.append(
            f"{c.get('name')}" + (f" {score:.3g}/{c.get('threshold')}" if isinstance(score, float) else "")
        )
    return "failed: " + ", ".join(parts)


def cmd_voices(args: argparse.Namespace, settings: Settings) -> int:
    """``protect FILE --name NAME``: add a protected voice; ``protected``: list them."""
    from gen_server.errors import SoundryError
    from gen_server.voices import protected

    if args.voices_cmd == "protected":
        for name in protected.names(settings.data_dir):
            print(name)
        return 0
    try:
        with open(args.file, "rb") as fh:
            data = fh.read()
        path = protected.add(settings.data_dir, args.name, data)
    except OSError as e:
        print(f"soundry: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    except ValueError as e:  # a bad name
        print(f"soundry: {e}", file=sys.stderr)
        return 2
    except SoundryError as e:  # audio that does not decode
        print(f"soundry: {args.file}: {e.message}", file=sys.stderr)
        return 2
    print(f"protected voice '{args.name}' saved to {path}; voices matching it are refused from now on")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``audit`` and ``voices`` commands."""
    audit = sub.add_parser("audit", help="print the voice audit log (created, refused, approved, deleted)")
    audit.add_argument("--json", action="store_true", help="the JSON lines as written")
    audit.add_argument("--voice", help="only this voice id's events")
    audit.set_defaults(func=cmd_audit)
    voices = sub.add_parser(
        "voices", help="the installation's protected voices (never cloned)"
    ).add_subparsers(dest="voices_cmd", required=True)
    protect = voices.add_parser("protect", help="add a reference clip of a person who must not be cloned")
    protect.add_argument("file", help="audio file (any common format) of the person speaking")
    protect.add_argument("--name", required=True, help="a name for them (letters, digits, _ . -)")
    voices.add_parser("protected", help="list the protected voices")
    for p in voices.choices.values():
        p.set_defaults(func=cmd_voices)
