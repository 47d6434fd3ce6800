"""Pieces of the UI that are not wiring: the jobs panel's HTML, card texts, and the card files cache."""

from __future__ import annotations

import atexit
import base64
import html
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from gen_server.audio.looping import generation_seconds
from gen_server.files import atomic_write
from ui.forms import KIND_TITLES
from ui.tracker import MISSING, ClientPool, Job, key_id
from ui.visuals import spectrogram_image, waveform_image

logger = logging.getLogger(__name__)

STATE_TEXT = {
    "queued": "queued",
    "running": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    MISSING: "unknown",
}

PANEL_CSS = """
.soundry-summary { margin: 0 0 .5rem 0; font-weight: 600; }
.soundry-jobs { list-style: none; margin: 0; padding: 0; display: grid; gap: .5rem; }
.soundry-job { border: 1px solid var(--border-color-primary, #d1d5db); border-radius: 8px;
  padding: .5rem .75rem; display: grid; grid-template-columns: 1fr auto; gap: .25rem .75rem;
  align-items: center; }
.soundry-job .what { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.soundry-job .state { font-weight: 600; }
.soundry-job[data-state="failed"] .state, .soundry-job[data-state="missing"] .state { color: #dc2626; }
.soundry-job[data-state="succeeded"] .state { color: #16a34a; }
.soundry-job progress { width: 100%; height: 1rem; grid-column: 1 / 2; }
.soundry-job .pct { font-variant-numeric: tabular-nums; min-width: 3.5em; text-align: right; }
.soundry-job .error { grid-column: 1 / 3; color: #dc2626; font-size: .9em; }
.soundry-job button { grid-column: 2 / 3; grid-row: 1 / 2; }
"""

# Clicks on a job's cancel button reach Python as a "click" event carrying the job id.
PANEL_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-cancel]');
  if (button) { trigger('click', {job: button.dataset.cancel}); }
});
"""


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def percent(job: Mapping[str, Any]) -> int:
    """Progress as a whole percentage; a finished job shows 100."""
    if job.get("state") == "succeeded":
        return 100
    return max(0, min(100, round(float(job.get("progress") or 0.0) * 100)))


def job_title(job: Mapping[str, Any], limit: int = 60) -> str:
    spec = job.get("spec") or {}
    kind = KIND_TITLES.get(str(job.get("kind") or spec.get("kind")), "Job")
    prompt = str(spec.get("prompt") or "")
    return f"{kind}: “{_short(prompt, limit)}”" if prompt else f"{kind} {str(job.get('id', ''))[:8]}"


def eta_text(seconds: float) -> str:
    """A rough duration for people: "5 s", "2 min", "1 h 10 min"."""
    if seconds < 60:
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def jobs_panel(jobs: Sequence[Job], positions: Mapping[str, int]) -> str:
    """The "Your jobs" list: state, queue position, estimated time left and a progress bar per job."""
    if not jobs:
        return '<p class="soundry-summary" role="status">No jobs yet: generate something above.</p>'
    counts: dict[str, int] = {}
    for job in jobs:
        label = STATE_TEXT.get(str(job.get("state")), str(job.get("state")))
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{n} {label}" for label, n in counts.items())
    items = []
    for job in jobs:
        job_id = html.escape(str(job.get("id", "")))
        state = str(job.get("state", "queued"))
        pct = percent(job)
        where = ""
        if state == "queued":
            position = positions.get(str(job.get("id")))
            where = f" · #{position} in the {html.escape(str(job.get('kind', '')))} queue" if position else ""
        eta = job.get("eta_s")
        if state in ("queued", "running") and isinstance(eta, int | float):
            where += f" · about {eta_text(float(eta))} left"
        model = html.escape(str(job.get("model") or ""))
        title = html.escape(job_title(job))
        seed = (job.get("spec") or {}).get("seed")
        detail = f"{model}" + (f" · seed {seed}" if seed is not None else "")
        cancel = (
            f'<button type="button" class="secondary" data-cancel="{job_id}" '
            f'aria-label="Cancel job {job_id[:8]}">Cancel</button>'
            if state in ("queued", "running")
            else ""
        )
        error = ""
        if job.get("error") and state in ("failed", MISSING):
            err = job["error"]
            code, message = html.escape(str(err.get("code"))), html.escape(str(err.get("message")))
            error = f'<div class="error">{code}: {message}</div>'
        duration = streamed_seconds(job.get("spec") or {})
        requested = f' data-requested-s="{duration:g}"' if duration else ""
        items.append(
            f'<li class="soundry-job" data-job-id="{job_id}" data-state="{html.escape(state)}" '
            f'data-progress="{pct}" data-title="{title}"{requested}>'
            f'<div class="what"><span class="state">{STATE_TEXT.get(state, html.escape(state))}</span>'
            f"{where} · {title} <small>({detail} · {job_id[:8]})</small></div>{cancel}"
            f'<progress max="100" value="{pct}" aria-label="Progress of job {job_id[:8]}">{pct}%</progress>'
            f'<span class="pct" aria-hidden="true">{pct}%</span>{error}</li>'
        )
    return (
        f'<p class="soundry-summary" role="status" aria-live="polite">{html.escape(summary)}</p>'
        f'<ul class="soundry-jobs" aria-label="Your jobs">{"".join(items)}</ul>'
    )


def streamed_seconds(spec: Mapping[str, Any]) -> float | None:
    """Seconds of audio a music/sfx job's live stream carries (speech: unknown): the model's whole
    generation, which for a loop or an exact tempo is more than the stored clip keeps."""
    duration = spec.get("duration_s")
    if not duration:
        return None
    return round(
        generation_seconds(
            str(spec.get("kind")),
            float(duration),
            tempo_bpm=spec.get("tempo_bpm"),
            loop=bool(spec.get("loop")),
            loop_bars=spec.get("loop_bars"),
        ),
        2,
    )


def card_header(job: Mapping[str, Any], licence: str | None = None) -> str:
    """Markdown heading and facts of a result card."""
    spec = job.get("spec") or {}
    result = job.get("result") or {}
    lines = [f"### {job_title(job, 90)}"]
    facts = [f"model `{job.get('model')}`", f"seed **{spec.get('seed')}**"]
    if result:
        facts.append(f"{float(result.get('duration_s', 0.0)):.2f} s")
        facts.append(f"{result.get('sample_rate')} Hz")
        facts.append(f"generated in {float(result.get('generation_s', 0.0)):.1f} s")
    facts.append(f"job `{job.get('id')}`")
    lines.append(" · ".join(facts))
    edit = edit_facts(result)
    if edit:
        lines.append(" · ".join(edit))
    for warning in result.get("warnings") or []:
        lines.append(f"Note: {warning}")
    if licence:
        lines.append(f"Licence of the weights: {licence}")
    if job.get("state") == "failed" and job.get("error"):
        err = job["error"]
        lines.append(f"**Failed** ({err.get('code')}): {err.get('message')}")
    return "\n\n".join(lines)


def edit_facts(result: Mapping[str, Any]) -> list[str]:
    """What an editor reads off a music/sfx card: tempo, key, loudness range, the loop and its seam."""
    facts = []
    analysis = result.get("analysis") or {}
    if analysis.get("tempo_bpm") is not None:
        facts.append(f"**{analysis['tempo_bpm']:g} BPM**")
    if analysis.get("key"):
        facts.append(f"key **{analysis['key']}** (confidence {analysis.get('key_confidence', 0):.2f})")
    if analysis.get("loudness_lufs") is not None:
        facts.append(f"{analysis['loudness_lufs']:g} LUFS")
    if analysis.get("loudness_range_lu") is not None:
        facts.append(f"loudness range {analysis['loudness_range_lu']:g} LU")
    tempo = result.get("tempo") or {}
    if tempo.get("generated_bpm") is not None and tempo.get("stretch") not in (None, 1.0):
        facts.append(f"stretched from {tempo['generated_bpm']:g} BPM")
    loop = result.get("loop") or {}
    if loop:
        bars = f"{loop['bars']} bars, " if loop.get("bars") else ""
        facts.append(
            f"loop ({bars}{loop['length_s']:g} s; seam {loop.get('seam_flux_ratio')}x the clip's flux)"
        )
    return facts


def spec_json(job: Mapping[str, Any]) -> str:
    spec = {k: v for k, v in (job.get("spec") or {}).items() if k not in ("owner",)}
    return json.dumps(spec, indent=2, ensure_ascii=False)


PICTURES_CSS = """
.soundry-pictures { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; margin: 0; }
.soundry-pictures figure { margin: 0; }
.soundry-pictures img { width: 100%; height: 160px; object-fit: fill; display: block; border-radius: 4px; }
.soundry-pictures figcaption { font-size: .85em; opacity: .8; }
"""


def pictures_html(files: CardFiles, job_id: str) -> str:
    """The card's waveform and spectrogram as inline images with text alternatives."""
    figures = []
    for path, caption, alt in (
        (files.waveform, "Waveform", f"Waveform of job {job_id[:8]}: amplitude over time"),
        (files.spectrogram, "Spectrogram", f"Spectrogram of job {job_id[:8]}: frequency (up) over time"),
    ):
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/webp;base64,{data}" alt="{html.escape(alt)}" '
            f'data-picture="{caption.lower()}"><figcaption>{caption}</figcaption></figure>'
        )
    return f'<div class="soundry-pictures">{"".join(figures)}</div>'


@dataclass(frozen=True, slots=True)
class CardFiles:
    """Files of one result card: the audio as WAV and its two pictures."""

    audio: Path
    waveform: Path
    spectrogram: Path


class CardCache:
    """Card files fetched through the API once per (API key, job) and kept on local disk.

    Args:
        pool: Clients per API key (audio comes from ``GET /v1/jobs/{id}/audio``).
        root: Where to keep files (a private temporary folder by default).
        max_jobs: Job folders kept; the least recently used are deleted beyond it.
    """

    def __init__(self, pool: ClientPool, root: Path | None = None, max_jobs: int = 300) -> None:
        self.pool = pool
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="soundry-ui-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        self.root = root
        self.max_jobs = max_jobs
        self._lock = threading.Lock()

    def _folder(self, api_key: str | None, job_id: str) -> Path:
        safe = "".join(c for c in job_id if c.isalnum() or c in "-_")[:64] or "job"
        folder = self.root / key_id(api_key) / safe
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        return folder

    def download(self, api_key: str | None, job_id: str, fmt: str) -> Path:
        """The job's audio in ``fmt`` (``wav``, ``flac``, ``mp3``, ``ogg``), transcoded by the API."""
        path = self._folder(api_key, job_id) / f"{job_id}.{fmt}"
        if not path.exists():
            atomic_write(path, self.pool.get(api_key).audio(job_id, fmt))
        return path

    def captions(self, api_key: str | None, job_id: str, fmt: str) -> Path:
        """A speech job's captions (``srt`` or ``vtt``), from ``GET /v1/jobs/{id}/captions``."""
        path = self._folder(api_key, job_id) / f"{job_id}.{fmt}"
        if not path.exists():
            atomic_write(path, self.pool.get(api_key).captions(job_id, fmt).encode())
        return path

    def card(self, api_key: str | None, job: Mapping[str, Any]) -> CardFiles:
        """Audio and pictures for a succeeded job (fetched and drawn on first use)."""
        job_id = str(job["id"])
        audio = self.download(api_key, job_id, "wav")
        folder = audio.parent
        wave, spec = folder / "waveform.webp", folder / "spectrogram.webp"
        if not (wave.exists() and spec.exists()):
            samples, rate = sf.read(io.BytesIO(audio.read_bytes()), dtype="float32", always_2d=True)
            for path, image in (
                (wave, waveform_image(samples)),
                (spec, spectrogram_image(samples, rate)),
            ):
                buffer = io.BytesIO()
                image.save(buffer, format="WEBP", quality=85)
                atomic_write(path, buffer.getvalue())
        self._prune()
        return CardFiles(audio=audio, waveform=wave, spectrogram=spec)

    def _prune(self) -> None:
        with self._lock:
            folders = [
                f for owner in self.root.iterdir() if owner.is_dir() for f in owner.iterdir() if f.is_dir()
            ]
            if len(folders) <= self.max_jobs:
                return
            folders.sort(key=lambda f: f.stat().st_mtime)
            cutoff = time.time() - 60  # never remove what a page is loading right now
            for folder in folders[: len(folders) - self.max_jobs]:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
