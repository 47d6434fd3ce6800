"""``soundry scene``: render a scene file on a server and write the mixed track beside its report.

The file is checked here first (errors as ``file:line: message``, the line of the named field), then
sent to the server, followed until the scene ends, and its track and ``<stem>.scene.json`` written.
``--bundle FILE`` asks for the scene's export (``export: true``) and saves its zip (stems, captions,
timelines) too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gen_server.settings import Settings

if TYPE_CHECKING:
    from gen_server.contract.scene import SceneView


def _scene_lines(text: str) -> dict[str, int]:
    """Line of each key and list item in a YAML/JSON scene file, by path (``tracks[1].items[0].gain_db``)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = f"{path}.{key_node.value}" if path else str(key_node.value)
                lines.setdefault(sub, key_node.start_mark.line + 1)
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                lines.setdefault(f"{path}[{i}]", child.start_mark.line + 1)
                walk(child, f"{path}[{i}]")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def _save(view: SceneView, out: Path, audio: bytes, bundle: Path | None, zipped: bytes | None) -> None:
    """Write the finished scene's track, its ``.scene.json`` and its export zip, and print a summary."""
    from gen_server.files import atomic_write

    assert view.result is not None  # a succeeded scene has its result
    atomic_write(out, audio)
    atomic_write(out.with_name(out.stem + ".scene.json"), view.model_dump_json(indent=2).encode())
    if bundle is not None and zipped is not None:
        atomic_write(bundle, zipped)
    mix = view.mix or {}
    print(
        f"{out}: {view.result.duration_s:.2f} s, {view.sample_rate} Hz, {view.channels} ch, "
        f"{mix.get('loudness_lufs', float('nan')):.2f} LUFS (target {view.target_lufs:g}), true peak "
        f"{mix.get('true_peak_dbtp', float('nan')):.2f} dBTP, watermark {view.result.watermark_payload}"
    )
    print(f"scene {view.id} (also the mixed track's job id); components:")
    for c in view.components:
        print(f"  {c.path:20} {c.label[:18]:18} {c.kind:6} {c.model[:26]:26} job {c.job_id}")
    if bundle is not None and zipped is not None:
        print(f"{bundle}: the export (mix, stems, captions, timeline.otio, project.rpp), {len(zipped)} bytes")


def cmd_scene(args: argparse.Namespace, settings: Settings) -> int:  # noqa: PLR0915 (a rule per branch; split it when it grows)
    """Render a scene file (YAML or JSON) on a server into one mixed, normalised, watermarked file."""
    import hashlib
    import re

    import httpx
    import yaml

    from gen_server.batch_runner import default_server
    from gen_server.client import TERMINAL_STATES, ApiError, SoundryClient
    from gen_server.errors import InvalidInput
    from gen_server.scene_plan import parse_scene

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        print(f"soundry: {path}: {e}", file=sys.stderr)
        return 2
    lines = _scene_lines(text)

    def where(field: str | None) -> str:
        key = field or ""
        while key and key not in lines:  # the nearest enclosing item or key that is in the file
            key = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
        return f"{path}:{lines[key]}" if key else str(path)

    try:
        parse_scene(data)
    except InvalidInput as e:
        print(f"{where(e.field)}: {e.message}", file=sys.stderr)
        return 2
    bundle = Path(args.bundle) if args.bundle else None
    exporting = bundle is not None and isinstance(data, dict) and not data.get("export")
    if exporting:
        data = {**data, "export": True}  # a bundle needs the scene's export
    url = args.server or default_server(settings)
    client = SoundryClient(url, api_key=args.api_key or settings.api_key, timeout_s=60.0)
    # the same file sent again re-attaches to its scene (like `soundry batch`); --new renders it afresh
    digest = hashlib.sha256(text.encode() + (b"\n# --bundle" if exporting else b"")).hexdigest()
    key = None if args.new else "scene-file-" + digest[:40]
    try:
        view = client.submit_scene(data, idempotency_key=key)
        if key is not None and view.state in ("failed", "cancelled"):
            print(f"scene {view.id} (an earlier run) {view.state}; rendering again", file=sys.stderr)
            view = client.submit_scene(data)
        scene_id = view.id
        print(f"scene {scene_id}: {len(view.components)} components queued on {url}", file=sys.stderr)
        deadline, last = time.monotonic() + args.timeout, ""
        while view.state not in TERMINAL_STATES and time.monotonic() < deadline:
            time.sleep(0.5)
            view = client.scene(scene_id)
            done = sum(c.state == "succeeded" for c in view.components)
            line = f"{view.state}, {done}/{len(view.components)} components done"
            if line != last:
                print(f"scene {scene_id}: {line} ({view.progress:.0%})", file=sys.stderr)
                last = line
        if view.state != "succeeded" or view.result is None:
            message = view.error.message if view.error else f"still {view.state} after {args.timeout:g} s"
            print(f"soundry: scene {scene_id} {view.state}: {message}", file=sys.stderr)
            return 1
        fmt = view.result.format
        out = Path(args.out) if args.out else Path(f"{path.stem}.{fmt}")
        suffix = out.suffix.lower().lstrip(".")
        audio = client.audio(scene_id, suffix if suffix in ("wav", "flac", "mp3", "ogg") else fmt)
        zipped = client.scene_export(scene_id) if bundle is not None else None
    except ApiError as e:
        if e.status == 422:
            print(f"{where(e.field)}: {e.message}", file=sys.stderr)
            return 2
        print(f"soundry: {url}: {e}", file=sys.stderr)
        return 1
    except httpx.HTTPError as e:
        print(f"soundry: cannot reach the Soundry server at {url}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    _save(view, out, audio, bundle, zipped)
    return 0
