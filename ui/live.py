"""Listening while a job runs: a player per running job, fed by ``GET /v1/jobs/{id}/stream``.

The "Your jobs" panel is re-rendered from Python twice a second, which would restart any player inside
it, so the players live in their own component that Python never updates. Its script watches the
panel's rows (``li.soundry-job[data-state="running"]``) and, for each running job, fetches the job's
MP3 stream with the page's API key and appends it to a Media Source (``audio/mpeg``, supported by
Chromium, Firefox and Safari); the ``<audio>`` element starts playing as soon as the first piece is
there and keeps going as the stream grows. Under it: audio seconds ready of the seconds requested,
the playing position, and a stall notice when playback catches up with the model (on a CPU the models
make audio slower than real time: the player waits, it never loops or repeats). The player stays until
its audio has played out; the job's result card (the stored, loudness-normalised file) appears as
usual when the job ends.

The stream URL is relative to ``api_base`` (empty: the page's own origin, as ``soundry serve`` mounts
the UI beside the API; ``python -m ui URL`` passes the API's URL, which then needs to allow the UI's
origin).
"""

from __future__ import annotations

import json

import gradio as gr

LIVE_CSS = """
.soundry-live { display: grid; gap: .5em; }
.soundry-live:empty { display: none; }
.soundry-live-item { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: .4em .6em; }
.soundry-live-item audio { width: 100%; }
.soundry-live-item progress { width: 100%; height: .5em; }
.soundry-live-item .stall { color: #b45309; }
"""

_LIVE_JS = """
const apiBase = __API_BASE__;
const root = document.createElement('div');
root.className = 'soundry-live';
root.setAttribute('aria-label', 'Listen while it is made');
element.appendChild(root);
const players = new Map();
const fmt = (s) => `${s.toFixed(1)} s`;

function apiKey() {
  const box = document.querySelector('#soundry-api-key input, #soundry-api-key textarea');
  return box ? box.value.trim() : '';
}

function startPlayer(row) {
  const id = row.dataset.jobId;
  const requested = Number(row.dataset.requestedS) || 0;
  const item = document.createElement('div');
  item.className = 'soundry-live-item';
  item.dataset.jobId = id;
  const title = document.createElement('div');
  title.textContent = `Listening while it is made: ${row.dataset.title || id.slice(0, 8)}`;
  const audio = document.createElement('audio');
  audio.controls = true;
  audio.autoplay = true;
  audio.id = `live-${id}`;
  audio.setAttribute('aria-label', `Live audio of job ${id.slice(0, 8)}`);
  const bar = document.createElement('progress');
  bar.max = requested || 1;
  bar.value = 0;
  bar.setAttribute('aria-label', 'Audio seconds ready');
  const status = document.createElement('div');
  status.className = 'status';
  status.setAttribute('role', 'status');
  item.append(title, audio, bar, status);
  root.appendChild(item);
  const p = {item, audio, bar, status, requested, ready: 0, done: false, stalled: false, running: true};
  players.set(id, p);

  const show = () => {
    const of = p.requested ? ` of ${fmt(p.requested)}` : '';
    let text = `${fmt(p.ready)}${of} ready · playing ${fmt(audio.currentTime)}`;
    if (p.error) { text = p.error; }
    else if (p.stalled && !p.done) {
      text += ' · waiting for the model (it makes audio slower than real time here)';
    } else if (p.done) { text += ' · all audio received'; }
    status.textContent = text;
    status.classList.toggle('stall', p.stalled && !p.done);
    item.dataset.ready = p.ready.toFixed(2);
    item.dataset.stalled = String(p.stalled && !p.done);
    if (p.requested) { bar.value = Math.min(p.ready, p.requested); }
  };
  p.show = show;
  audio.addEventListener('timeupdate', show);
  audio.addEventListener('waiting', () => { p.stalled = true; show(); });
  audio.addEventListener('playing', () => { p.stalled = false; show(); });
  audio.addEventListener('ended', () => { p.ended = true; maybeRemove(id); });

  const source = new MediaSource();
  audio.src = URL.createObjectURL(source);
  source.addEventListener('sourceopen', async () => {
    const buffer = source.addSourceBuffer('audio/mpeg');
    const queue = [];
    const pump = () => {
      if (buffer.updating || source.readyState !== 'open') { return; }
      if (queue.length) { buffer.appendBuffer(queue.shift()); return; }
      if (p.done) { source.endOfStream(); }
    };
    buffer.addEventListener('updateend', () => {
      if (buffer.buffered.length) { p.ready = buffer.buffered.end(buffer.buffered.length - 1); }
      show();
      pump();
    });
    try {
      const key = apiKey();
      const response = await fetch(`${apiBase}/v1/jobs/${encodeURIComponent(id)}/stream?format=mp3`, {
        headers: key ? {Authorization: `Bearer ${key}`} : {},
      });
      if (!response.ok) {
        let message = `HTTP ${response.status}`;
        try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      const reader = response.body.getReader();
      for (;;) {
        const {done, value} = await reader.read();
        if (done) { break; }
        queue.push(value);
        pump();
      }
    } catch (e) {
      p.error = `Live audio unavailable: ${e.message}`;
    }
    p.done = true;
    show();
    pump();
  });
}

function maybeRemove(id) {
  const p = players.get(id);
  if (!p || p.running) { return; }
  const playing = !p.audio.paused && !p.audio.ended && !p.error;
  if (!playing || p.ended) {
    players.delete(id);
    URL.revokeObjectURL(p.audio.src);
    p.item.remove();
  }
}

function sync() {
  const rows = document.querySelectorAll('#soundry-jobs li.soundry-job');
  const running = new Set();
  rows.forEach((row) => {
    if (row.dataset.state === 'running') {
      running.add(row.dataset.jobId);
      if (!players.has(row.dataset.jobId)) { startPlayer(row); }
    }
  });
  for (const [id, p] of players) {
    p.running = running.has(id);
    maybeRemove(id);
  }
}

setInterval(sync, 500);
sync();
"""


def live_players(api_base: str = "") -> gr.HTML:
    """The component holding the live players (place it under "Your jobs")."""
    return gr.HTML(
        "",
        css_template=LIVE_CSS,
        js_on_load=_LIVE_JS.replace("__API_BASE__", json.dumps(api_base.rstrip("/"))),
        elem_id="soundry-live",
        label="Listen while it is made",
    )
