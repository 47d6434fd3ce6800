"""The Scenes tab: edit a scene (YAML), see its timeline, render it, follow it, play the mixed track.

Everything goes through the project's client (``submit_scene``, ``scene``, ``cancel_scene``,
``audio``, ``scene_export``). With "Export stems and timelines" ticked (or ``export: true`` in the
YAML) the scene's export zip (mix, stems, captions, ``timeline.otio``, ``project.rpp``) is offered too.
The timeline picture is drawn with numpy and Pillow from the YAML as typed (speech
lengths estimated from the text, the ducking of beds computed by the mixer's own code) and redrawn
with the generated lengths and the mix's waveform once the scene is done.

Use it inside the caller's ``gr.Blocks`` (typically in a ``gr.Tab``)::

    with gr.Tab("Scenes"):
        build_scenes_tab(client, key_box=api_key_textbox)
"""

from __future__ import annotations

import html
import io
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf
import yaml
from PIL import Image, ImageDraw

from gen_server.audio.mix import CONTROL_HZ, Ducking, duck_gain_db
from gen_server.client import TERMINAL_STATES, ApiError, SoundryClient
from gen_server.contract.scene import Duck, SceneRequest, SceneView
from gen_server.errors import InvalidInput
from gen_server.scene_plan import estimate_speech_s, parse_scene

logger = logging.getLogger(__name__)

SCENES_DIR = Path(__file__).resolve().parents[1] / "prompts" / "scenes"
POLL_S = 0.5
TIMEOUT_S = 1800.0
COMPONENT_HEADERS = ["item", "label", "kind", "model", "start s", "length s", "state", "job id"]

BACKGROUND = (17, 24, 39)
GRID = (55, 65, 81)
TEXT = (229, 231, 235)
KIND_COLOURS = {"speech": (96, 165, 250), "music": (167, 139, 250), "sfx": (251, 146, 60)}
DUCK_COLOUR = (250, 204, 21)
WAVE_COLOUR = (52, 211, 153)

FALLBACK_SCENE = """name: my scene
loudness_target: podcast
tracks:
  - name: voice
    items:
      - {kind: speech, text: Welcome to the show., start_s: 1.0}
  - name: bed
    items:
      - {kind: music, prompt: warm lofi piano, duration_s: 6, gain_db: -4, fade_out_s: 1.5}
"""


# ------------------------------------------------------------------------------------------ examples


def scene_examples(folder: Path = SCENES_DIR) -> dict[str, str]:
    """Example scene files (name -> YAML text) from ``prompts/scenes``; a small built-in one if none."""
    found = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.y*ml")) if p.is_file()}
    return found or {"example.yaml": FALLBACK_SCENE}


def parse_yaml(text: str) -> SceneRequest:
    """The scene in ``text`` (YAML or JSON), checked against the request schema (not the catalog).

    Raises:
        InvalidInput: YAML syntax or the first schema problem, naming the item.
    """
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as e:
        raise InvalidInput(f"YAML: {e}", field="body") from e
    return parse_scene(data)


# ------------------------------------------------------------------------------------------ timeline


@dataclass(frozen=True, slots=True)
class Box:
    """One item on the picture: lane, span (s), kind, label, fades (s), planned or generated."""

    lane: int
    start_s: float
    length_s: float
    kind: str
    label: str
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    duck: Ducking | None = None
    estimated: bool = False


def boxes_for(req: SceneRequest, lengths: Mapping[str, float] | None = None) -> list[Box]:
    """The scene's items as boxes: music/sfx at their ``duration_s``; speech estimated from its text,
    or the generated length when ``lengths`` (item path -> seconds) has it."""
    boxes: list[Box] = []
    for t, track in enumerate(req.tracks):
        for i, item in enumerate(track.items):
            path = f"tracks[{t}].items[{i}]"
            known = (lengths or {}).get(path)
            if known is not None:
                length, estimated = known, False
            elif item.kind == "speech":
                length, estimated = estimate_speech_s(item.text or item.prompt or "", item.speed), True
            else:
                length, estimated = float(item.duration_s or 0.0), False
            duck = None
            settings = item.duck if item.duck is not None else (Duck() if item.kind == "music" else None)
            if settings is not None and settings.duck_db > 0 and item.kind != "speech":
                duck = Ducking(
                    depth_db=settings.duck_db,
                    attack_s=settings.attack_ms / 1000,
                    release_s=settings.release_ms / 1000,
                    hold_s=settings.hold_ms / 1000,
                    lookahead_s=settings.lookahead_ms / 1000,
                )
            boxes.append(
                Box(
                    lane=t,
                    start_s=item.start_s,
                    length_s=max(length, 0.0),
                    kind=item.kind,
                    label=item.id or path,
                    fade_in_s=item.fade_in_s,
                    fade_out_s=item.fade_out_s,
                    duck=duck,
                    estimated=estimated,
                )
            )
    return boxes


def _speech_activity(boxes: Sequence[Box], ticks: int) -> np.ndarray:
    active = np.zeros(ticks, dtype=bool)
    for b in boxes:
        if b.kind == "speech":
            active[round(b.start_s * CONTROL_HZ) : round((b.start_s + b.length_s) * CONTROL_HZ)] = True
    return active


def timeline_image(
    boxes: Sequence[Box],
    *,
    lanes: Sequence[str] = (),
    length_s: float | None = None,
    mix: np.ndarray | None = None,
    width: int = 960,
) -> Image.Image:
    """The timeline as an RGB picture: one lane per track, boxes coloured by kind with their fades,
    the ducking curve of beds (yellow), a time axis, and the mix's waveform under it when given.

    Args:
        boxes: Items (:func:`boxes_for`).
        lanes: Track names, by lane.
        length_s: Length of the axis (s); the end of the last box when omitted.
        mix: ``[frames]`` mono samples of the finished mix, spread over the whole axis.
        width: Picture width in pixels.
    """
    n_lanes = max([b.lane + 1 for b in boxes] + [len(lanes), 1])
    end = length_s or max([b.start_s + b.length_s for b in boxes] + [1.0])
    left, top, lane_h, axis_h = 90, 8, 46, 22
    wave_h = 70 if mix is not None else 0
    height = top + n_lanes * lane_h + axis_h + wave_h + 8
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    span = width - left - 10

    def x(t: float) -> float:
        return left + span * min(max(t, 0.0), end) / end

    for lane in range(n_lanes):
        y0 = top + lane * lane_h
        draw.line([(left, y0 + lane_h - 2), (width - 10, y0 + lane_h - 2)], fill=GRID)
        name = lanes[lane] if lane < len(lanes) and lanes[lane] else f"track {lane}"
        draw.text((6, y0 + lane_h / 2 - 6), name[:12], fill=TEXT)
    ticks = round(end * CONTROL_HZ) + 1
    speech = _speech_activity(boxes, ticks)
    for b in boxes:
        y0, y1 = top + b.lane * lane_h + 4, top + b.lane * lane_h + lane_h - 6
        x0, x1 = x(b.start_s), max(x(b.start_s + b.length_s), x(b.start_s) + 2)
        colour = KIND_COLOURS.get(b.kind, TEXT)
        fi = x(b.start_s + min(b.fade_in_s, b.length_s)) - x0
        fo = x1 - x(b.start_s + b.length_s - min(b.fade_out_s, b.length_s))
        draw.polygon([(x0, y1), (x0 + fi, y0), (x1 - fo, y0), (x1, y1)], fill=tuple(c // 2 for c in colour))
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=1 if b.estimated else 2)
        draw.text((x0 + 4, y0 + 2), f"{b.label[:24]}{' ~' if b.estimated else ''}", fill=TEXT)
        if b.duck is not None and speech.any():
            curve = duck_gain_db(speech, b.duck)
            first, last = (
                round(b.start_s * CONTROL_HZ),
                min(round((b.start_s + b.length_s) * CONTROL_HZ), ticks),
            )
            if last > first:
                steps = np.linspace(first, last - 1, max(2, int(x1 - x0))).astype(int)
                depth = max(b.duck.depth_db, 1e-6)
                points = [
                    (x(k / CONTROL_HZ), y0 + 14 + (y1 - y0 - 16) * float(-curve[k]) / max(depth, 24.0))
                    for k in steps
                ]
                draw.line(points, fill=DUCK_COLOUR, width=2)
    axis_y = top + n_lanes * lane_h + 2
    draw.line([(left, axis_y), (width - 10, axis_y)], fill=TEXT)
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 30, 60, 120) if end / s <= 16)
    t = 0.0
    while t <= end + 1e-9:
        draw.line([(x(t), axis_y), (x(t), axis_y + 4)], fill=TEXT)
        draw.text((x(t) - 6, axis_y + 6), f"{t:g}s", fill=TEXT)
        t += step
    if mix is not None and mix.size:
        mid = axis_y + axis_h + wave_h / 2
        edges = np.linspace(0, mix.size, span + 1).astype(np.int64)
        for px in range(span):
            chunk = mix[edges[px] : max(edges[px + 1], edges[px] + 1)]
            if chunk.size:
                hi, lo = float(np.clip(chunk.max(), -1, 1)), float(np.clip(chunk.min(), -1, 1))
                draw.line(
                    [(left + px, mid - hi * wave_h / 2), (left + px, mid - lo * wave_h / 2)], fill=WAVE_COLOUR
                )
        draw.text((6, mid - 6), "mix", fill=TEXT)
    return image


def preview(text: str) -> tuple[Image.Image | None, str]:
    """The planned timeline of the YAML in the editor, and a status line (or the first problem)."""
    try:
        req = parse_yaml(text)
    except InvalidInput as e:
        return None, f"⚠️ {html.escape(e.message)}"
    boxes = boxes_for(req)
    lanes = [t.name or f"track {i}" for i, t in enumerate(req.tracks)]
    items = sum(len(t.items) for t in req.tracks)
    end = req.length_s or max(b.start_s + b.length_s for b in boxes)
    return (
        timeline_image(boxes, lanes=lanes, length_s=end),
        f"{items} items on {len(req.tracks)} tracks, about {end:.1f} s, mixed to {req.target_lufs:g} LUFS "
        "(speech lengths marked ~ are estimated until generated).",
    )


# ------------------------------------------------------------------------------------------ results


def component_rows(view: SceneView | None) -> list[list[Any]]:
    rows = []
    for c in view.components if view is not None else []:
        state = f"{c.state}: {c.error.message}" if c.error else c.state
        length = round(c.duration_s, 2) if c.duration_s is not None else ""
        rows.append([c.path, c.label, c.kind, c.model, c.start_s, length, state, c.job_id])
    return rows


def status_html(view: SceneView | None) -> str:
    """The scene's state, components done, a progress bar and, when done, the measured levels."""
    if view is None:
        return '<div class="soundry-scene"><p role="status">No scene rendered yet.</p></div>'
    done = sum(c.state == "succeeded" for c in view.components)
    pct = round(100 * view.progress)
    state = html.escape(view.state)
    lines = [
        f"<strong>{html.escape(view.name)}</strong>: {state} · {done} of {len(view.components)} "
        f"components done · scene <code>{html.escape(view.id)}</code>"
    ]
    mix = view.mix or {}
    if mix:
        lines.append(
            f"mix: {mix.get('duration_s', 0):.2f} s, {mix.get('loudness_lufs', 0):.2f} LUFS (target "
            f"{view.target_lufs}), true peak {mix.get('true_peak_dbtp', 0):.2f} dBTP, watermarked"
        )
    if view.error:
        lines.append(f"⚠️ {html.escape(view.error.message)}")
    body = "".join(f"<p>{line}</p>" for line in lines)
    return (
        f'<div class="soundry-scene" role="status" data-state="{state}" data-progress="{pct}">{body}'
        f'<progress max="100" value="{pct}" aria-label="Scene progress">{pct}%</progress></div>'
    )


class ScenesTab:
    """The tab's handlers (kept apart from the layout so they can be called directly)."""

    def __init__(self, client: SoundryClient, examples: Mapping[str, str]) -> None:
        self.client = client
        self.examples = dict(examples)
        self.out_dir = Path(tempfile.mkdtemp(prefix="soundry-ui-scenes-"))
        self._clients: dict[str, SoundryClient] = {}

    def client_for(self, api_key: str | None) -> SoundryClient:
        key = (api_key or "").strip()
        if not key:
            return self.client
        if key not in self._clients:
            self._clients[key] = self.client.with_key(key)
        return self._clients[key]

    def load_example(self, name: str | None) -> tuple[str, Image.Image | None, str]:
        text = self.examples.get(name or "", "")
        image, note = preview(text)
        return text, image, note

    def render(
        self, text: str, export: bool = False, api_key: str | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Submit the scene and follow it: yields (status, timeline, audio path, rows, scene id, bundle path).

        Args:
            text: The scene (YAML or JSON).
            export: Ask for the scene's export (``export: true``) and offer its zip when done.
            api_key: The caller's key, if any.
        """
        client = self.client_for(api_key)
        try:
            req = parse_yaml(text)
            data = yaml.safe_load(text)
            if export:
                data["export"] = True
            view = client.submit_scene(data)
        except InvalidInput as e:
            yield f"<p>⚠️ {html.escape(e.message)}</p>", gr.skip(), None, [], None, None
            return
        except ApiError as e:
            field = f" (<code>{html.escape(e.field)}</code>)" if e.field else ""
            yield f"<p>⚠️ {html.escape(e.message)}{field}</p>", gr.skip(), None, [], None, None
            return
        scene_id = view.id
        lanes = [t.name or f"track {i}" for i, t in enumerate(req.tracks)]
        deadline = time.monotonic() + TIMEOUT_S
        last: tuple[Any, ...] = ()
        while True:
            current = (view.state, round(view.progress, 2))
            if current != last:
                last = current
                yield status_html(view), gr.skip(), None, component_rows(view), scene_id, None
            if view.state in TERMINAL_STATES or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
            view = client.scene(scene_id)
        if view.state != "succeeded" or view.result is None:
            yield status_html(view), gr.skip(), None, component_rows(view), scene_id, None
            return
        data = client.audio(scene_id, "wav")
        path = self.out_dir / f"{scene_id}.wav"
        path.write_bytes(data)
        samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        lengths = {c.path: c.duration_s for c in view.components if c.duration_s}
        boxes = boxes_for(req, lengths)
        image = timeline_image(boxes, lanes=lanes, length_s=view.result.duration_s, mix=samples.mean(axis=1))
        bundle = None
        if "export" in view.links:
            bundle = self.out_dir / f"{scene_id}.zip"
            bundle.write_bytes(client.scene_export(scene_id))
        yield status_html(view), image, str(path), component_rows(view), scene_id, bundle and str(bundle)

    def build(self, key_box: gr.components.Component | None = None) -> None:
        """Lay out the controls in the current Blocks context and wire them.

        Args:
            key_box: A textbox holding the user's API key, if the page has one.
        """
        first = next(iter(self.examples))
        text, image, note = self.load_example(first)
        gr.Markdown(
            "Describe a scene once (tracks of speech, music and sound effects on a timeline) and get back "
            "one mixed, loudness-normalised, watermarked track. Items are generated in parallel on the "
            "queue; music beds duck under speech. Fields: see `prompts/scenes/README.md`."
        )
        with gr.Row():
            with gr.Column(scale=3):
                self.example = gr.Dropdown(
                    list(self.examples), value=first, label="Example", elem_id="scene-example"
                )
                self.editor = gr.Code(
                    value=text, language="yaml", label="Scene (YAML)", lines=22, elem_id="scene-yaml"
                )
            with gr.Column(scale=4):
                self.timeline = gr.Image(
                    value=image, type="pil", label="Timeline", interactive=False, elem_id="scene-timeline"
                )
                self.note = gr.Markdown(note, elem_id="scene-note")
                with gr.Row():
                    self.render_button = gr.Button("Render scene", variant="primary", elem_id="scene-render")
                    self.cancel_button = gr.Button("Cancel", elem_id="scene-cancel")
                self.status = gr.HTML(status_html(None), elem_id="scene-status")
                self.audio = gr.Audio(
                    label="Mixed track", type="filepath", interactive=False, elem_id="scene-audio"
                )
                self.export = gr.Checkbox(
                    value=False,
                    label="Export stems and timelines",
                    info="One stem per track, captions, timeline.otio and a Reaper project, in one zip",
                    elem_id="scene-export",
                )
                self.bundle = gr.File(label="Export (zip)", interactive=False, elem_id="scene-bundle")
        self.components = gr.Dataframe(
            headers=COMPONENT_HEADERS, value=[], interactive=False, label="Components (each is its own job)"
        )
        self.scene_id = gr.State(None)
        keys: list[Any] = [key_box] if key_box is not None else []
        # Explicit scene_* API names: auto-named "cancel"/"render" would clash with the page's own.
        self.example.change(
            self.load_example,
            [self.example],
            [self.editor, self.timeline, self.note],
            api_name="scene_example",
        )
        self.editor.change(
            preview,
            [self.editor],
            [self.timeline, self.note],
            show_progress="hidden",
            api_name="scene_preview",
        )
        self.render_button.click(
            self.render,
            [self.editor, self.export, *keys],
            [self.status, self.timeline, self.audio, self.components, self.scene_id, self.bundle],
            api_name="scene_render",
        )
        self.cancel_button.click(self.cancel, [self.scene_id, *keys], [self.status], api_name="scene_cancel")

    def cancel(self, scene_id: str | None, api_key: str | None = None) -> str:
        if not scene_id:
            return status_html(None)
        try:
            return status_html(self.client_for(api_key).cancel_scene(scene_id))
        except ApiError as e:
            return f"<p>⚠️ {html.escape(e.message)}</p>"


def build_scenes_tab(
    client: SoundryClient,
    *,
    key_box: gr.components.Component | None = None,
    examples_dir: Path = SCENES_DIR,
) -> ScenesTab:
    """Lay out the Scenes tab inside the caller's Blocks context (e.g. in a ``gr.Tab``) and wire it.

    Args:
        client: The API client.
        key_box: A textbox holding the user's API key, if the page has one.
        examples_dir: Where the example scene files are (``prompts/scenes``).

    Returns:
        The tab: its handlers and components (``editor``, ``timeline``, ``status``, ``audio``, ...).
    """
    tab = ScenesTab(client, scene_examples(examples_dir))
    tab.build(key_box)
    return tab
