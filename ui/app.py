"""The Gradio creator UI. It talks only to the HTTP API, through the project's client.

Layout: tabs Music, Sound effects, Speech (one form each), Batch, Scenes and History; below them
"Your jobs" (state, queue position, live progress bar, cancel) and "Results" (cards with player,
waveform, spectrogram, seed and full spec, "reuse these settings", download in a chosen format).

How it stays live: submitting returns at once with the job id, which goes into the browser's local
storage (``gr.BrowserState``), so jobs and results survive a reload. A :class:`ui.tracker.JobTracker`
follows each running job through the API's event stream; a timer on the page reads its views twice a
second while anything is in flight. The API key (when the server has keys) is kept in the browser
too and sent with every request, so each person sees only their own jobs. While a job runs, its
audio plays as it is made (:mod:`ui.live`: the browser reads the job's stream itself).

Where things are: this module lays out the page, loads the models, and wires the page load, the API
key, "Your jobs" (its timer, cancel and clear) and :func:`build_ui`; :mod:`ui.page` holds what the
parts share (:class:`ui.page.Page`); the Music, Sound effects and Speech tabs are in
:mod:`ui.gen_tab` (their shared accordions in :mod:`ui.gen_controls`), the result cards in
:mod:`ui.results`, the History tab in :mod:`ui.history_tab`, the Batch tab in :mod:`ui.batch_tab`
and the Scenes tab in :mod:`ui.scenes_tab`.

Endpoints for ``gradio_client`` (``api_name``): ``models``, ``jobs``, ``cancel`` (here);
``submit_music``, ``submit_sfx``, ``submit_speech`` (:mod:`ui.gen_tab`); ``history``
(:mod:`ui.history_tab`, wired here on page load); batches: ``submit_batch``, ``batch``,
``cancel_batch``, ``batch_archive`` (:mod:`ui.batch_tab`); scenes: ``scene_example``,
``scene_preview``, ``scene_render``, ``scene_cancel`` (:mod:`ui.scenes_tab`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from gen_server.client import ApiError, SoundryClient
from ui.batch_tab import BatchTab
from ui.components import PANEL_CSS, PANEL_JS, CardCache, job_title, jobs_panel
from ui.examples import PROMPTS_DIR, load_examples
from ui.forms import KINDS
from ui.gen_controls import model_choices
from ui.gen_tab import GenTabs
from ui.history_tab import HistoryTab
from ui.live import live_players
from ui.page import Page, api_error
from ui.results import ResultCards
from ui.scenes_tab import build_scenes_tab
from ui.tracker import ClientPool, Job, JobTracker, is_done
from ui.voices_tab import VoicesTab

logger = logging.getLogger(__name__)

MAX_SHOWN = 12  # rows in "Your jobs"
MAX_CARDS = 8  # result cards


class SoundryUI:
    """Builds the Blocks app and holds what its handlers share (clients, job tracker, the tabs)."""

    def __init__(
        self,
        client: SoundryClient,
        *,
        prompts_dir: Path | None = None,
        tick_s: float = 0.5,
        api_base: str = "",
    ) -> None:
        self.api_base = api_base
        self.pool = ClientPool(client)
        self.tracker = JobTracker(self.pool)
        self.gen = GenTabs(self.pool, self.tracker, load_examples(prompts_dir))
        self.results = ResultCards(CardCache(self.pool), self.gen.tabs)
        self.batch = BatchTab(self.pool, PROMPTS_DIR if prompts_dir is None else prompts_dir)
        self.history = HistoryTab(self.pool)
        self.voices = VoicesTab(self.pool)
        self.tick_s = tick_s

    # ----------------------------------------------------------------------------------- layout

    def build(self) -> gr.Blocks:
        """Lay out the page, then wire it (each tab's module wires its own controls)."""
        with gr.Blocks(title="Soundry", delete_cache=(3600, 86400)) as demo:
            self.stored_key = gr.BrowserState("", storage_key="soundry-api-key")
            self.my_jobs = gr.BrowserState([], storage_key="soundry-jobs")
            self.catalog = gr.State({})
            self.shown = gr.State({})
            self.done = gr.State([])
            self.timer = gr.Timer(self.tick_s, active=False)
            self.batch.declare_state()

            gr.Markdown(
                "# Soundry\nGenerate speech, sound effects and music on your own server. "
                "Jobs run in a queue: keep working while they finish below."
            )
            self.connection = gr.Markdown("Connecting…", elem_id="soundry-connection")
            with gr.Accordion("Settings: API key", open=False):
                self.key_box = gr.Textbox(
                    label="API key",
                    type="password",
                    placeholder="sk-soundry-…",
                    info="Only needed when this server uses API keys. Kept in this browser only.",
                    elem_id="soundry-api-key",
                )
                self.connect = gr.Button("Use this key", size="sm")

            with gr.Tabs(selected="music") as self.tabs_box:
                with gr.Tab("Music", id="music", elem_id="tab-music"):
                    self.gen.build("music")
                with gr.Tab("Sound effects", id="sfx", elem_id="tab-sfx"):
                    self.gen.build("sfx")
                with gr.Tab("Speech", id="speech", elem_id="tab-speech"):
                    self.gen.build("speech")
                with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                    self.batch.build(self.key_box)
                with gr.Tab("Scenes", id="scenes", elem_id="tab-scenes"):
                    build_scenes_tab(self.pool.base, key_box=self.key_box)
                with gr.Tab("Voices", id="voices", elem_id="tab-voices"):
                    self.voices.build()
                with gr.Tab("History", id="history", elem_id="tab-history"):
                    self.history.build()

            gr.Markdown("## Your jobs")
            self.panel = gr.HTML(
                jobs_panel([], {}),
                css_template=PANEL_CSS,
                js_on_load=PANEL_JS,
                elem_id="soundry-jobs",
                label="Your jobs",
            )
            live_players(self.api_base)
            with gr.Row():
                self.cancel_pick = gr.Dropdown(
                    choices=[],
                    allow_custom_value=True,  # choices arrive from the API after the page loads
                    value=None,
                    label="Job to cancel",
                    info="Queued or running jobs",
                    elem_id="soundry-cancel-pick",
                    scale=3,
                )
                with gr.Column(scale=1, min_width=180):
                    self.cancel_btn = gr.Button(
                        "Cancel job", variant="stop", elem_id="soundry-cancel", size="md"
                    )
                    self.clear_btn = gr.Button("Clear finished", elem_id="soundry-clear", size="md")
            self.cancel_note = gr.Markdown(elem_id="soundry-cancel-note")
            self.page = Page(
                key_box=self.key_box,
                my_jobs=self.my_jobs,
                catalog=self.catalog,
                shown=self.shown,
                done=self.done,
                timer=self.timer,
                panel=self.panel,
                cancel_pick=self.cancel_pick,
                tabs_box=self.tabs_box,
                tick=self.tick,
            )
            gr.Markdown("## Results")
            self.results.build(demo, self.page)
            self._wire(demo)
        demo.queue(default_concurrency_limit=8)
        return demo

    # ----------------------------------------------------------------------------------- wiring

    def _wire(self, demo: gr.Blocks) -> None:
        page = self.page
        tab_models = [self.gen.tabs[k].controls["model"] for k in KINDS]
        hist_inputs = [self.key_box, *self.history.filters]

        load = demo.load(lambda key: key or "", [self.stored_key], [self.key_box], api_visibility="private")
        page.refresh_after(
            load.then(
                self.load_models,
                [self.key_box],
                [self.connection, self.catalog, *tab_models],
                api_name="models",
            ).then(self.history.history, hist_inputs, self.history.outputs, api_name="history")
        )

        for trigger in (self.connect.click, self.key_box.submit):
            connected = (
                trigger(
                    lambda key: (key or "").strip(),
                    [self.key_box],
                    [self.stored_key],
                    api_visibility="private",
                )
                .then(
                    self.load_models,
                    [self.key_box],
                    [self.connection, self.catalog, *tab_models],
                    api_visibility="private",
                )
                .then(self.history.history, hist_inputs, self.history.outputs, api_visibility="private")
            )
            page.refresh_after(connected).then(
                self.batch.list_batches,
                [self.key_box, self.batch.batch_id],
                [self.batch.pick],
                api_visibility="private",
            )

        for tab in self.gen.tabs.values():
            self.gen.wire(tab, page)
        self.batch.on_load(demo)

        self.timer.tick(
            self.tick,
            page.tick_inputs,
            page.tick_outputs,
            api_name="jobs",
            show_progress="hidden",
            concurrency_limit=None,
            trigger_mode="once",
        )
        page.refresh_after(
            self.cancel_btn.click(
                self.cancel, [self.cancel_pick, self.key_box], [self.cancel_note], api_name="cancel"
            )
        )
        page.refresh_after(
            self.panel.click(
                self.cancel_clicked, [self.key_box], [self.cancel_note], api_visibility="private"
            )
        )
        page.refresh_after(
            self.clear_btn.click(
                self.clear_finished, [self.my_jobs, self.shown], [self.my_jobs], api_visibility="private"
            )
        )
        self.history.wire(page)
        self.voices.wire(demo, self.key_box, self.gen.tabs["speech"].controls["voice_id"])

    # ----------------------------------------------------------------------------------- handlers

    def load_models(self, api_key: str | None) -> list[Any]:
        """The catalog from ``GET /v1/models``: each tab's model choices (with licences) and defaults."""
        client = self.pool.get(api_key)
        try:
            models = client.models()
        except ApiError as e:
            message = (
                "This server needs an API key: enter it under *Settings: API key*."
                if e.status == 401
                else f"Could not load the models: {e.message}"
            )
            return [message, {}, *(gr.Dropdown(choices=[], value=None) for _ in KINDS)]
        except Exception as e:  # the API is down or unreachable: say so on the page
            logger.warning("ui: models unavailable: %s", e)
            return [
                f"Cannot reach the API at {client.base_url}: {e}",
                {},
                *(gr.Dropdown(choices=[], value=None) for _ in KINDS),
            ]
        entries = [m.model_dump(mode="json") for m in models]  # the page's catalog state is plain JSON
        catalog = {m["id"]: m for m in entries}
        updates = [model_choices(entries, kind) for kind in KINDS]
        status = f"Connected to {client.base_url}: {len(models)} models." + (
            " Signed in with your API key." if (api_key or "").strip() else ""
        )
        return [status, catalog, *updates]

    def tick(
        self, my_jobs: Sequence[str] | None, api_key: str | None, shown: dict[str, Any] | None
    ) -> list[Any]:
        """Refresh "Your jobs" from the tracker; new finished jobs go to the result cards."""
        shown = shown or {}
        views: list[Job] = []
        for job_id in list(my_jobs or [])[:MAX_SHOWN]:
            try:
                views.append(self.tracker.view(api_key, job_id))
            except ApiError as e:
                views.append(
                    {"id": job_id, "state": "missing", "error": {"code": e.code, "message": e.message}}
                )
            except Exception as e:  # API unreachable for a moment: keep the page alive
                logger.debug("ui: job %s unavailable: %s", job_id, e)
        queued = [str(v["id"]) for v in views if v.get("state") == "queued"]
        # The API's own position when it gives one; else an estimate from the jobs the key can list.
        given = {str(v["id"]): int(v["queue_position"]) for v in views if v.get("queue_position")}
        estimate = [job_id for job_id in queued if job_id not in given]
        positions = {**(self.tracker.positions(api_key, estimate) if estimate else {}), **given}
        html = jobs_panel(views, positions)
        inflight = [v for v in views if not is_done(v)]
        inflight_ids = [str(v["id"]) for v in inflight]
        finished = [v for v in views if v.get("state") in ("succeeded", "failed")][:MAX_CARDS]
        finished_sig = [[str(v["id"]), str(v["state"])] for v in finished]

        panel_out: Any = html if html != shown.get("panel") else gr.skip()
        cancel_out: Any = gr.skip()
        if inflight_ids != shown.get("inflight"):
            choices = [(f"{job_title(v, 40)} · {str(v['id'])[:8]}", str(v["id"])) for v in inflight]
            cancel_out = gr.Dropdown(choices=choices, value=inflight_ids[0] if inflight_ids else None)
        done_out: Any = finished if finished_sig != shown.get("done") else gr.skip()
        new_shown = {"panel": html, "inflight": inflight_ids, "done": finished_sig}
        return [panel_out, cancel_out, new_shown, done_out, gr.Timer(active=bool(inflight))]

    def cancel(self, job_id: str | None, api_key: str | None) -> str:
        """Cancel a queued or running job (``DELETE /v1/jobs/{id}``)."""
        if not job_id:
            return "No job selected: nothing is queued or running."
        try:
            job = self.pool.get(api_key).cancel(job_id)
        except ApiError as e:
            raise api_error(e) from e
        self.tracker.track(api_key, job)
        return f"Job `{job_id[:8]}` is {job.state}."

    def cancel_clicked(self, api_key: str | None, evt: gr.EventData) -> str:
        data = evt._data if isinstance(evt._data, dict) else {}
        return self.cancel(str(data.get("job") or ""), api_key)

    @staticmethod
    def clear_finished(my_jobs: Sequence[str] | None, shown: dict[str, Any] | None) -> list[str]:
        inflight = set((shown or {}).get("inflight") or [])
        return [j for j in (my_jobs or []) if j in inflight]


def build_ui(
    client: SoundryClient, *, prompts_dir: Path | None = None, tick_s: float = 0.5, api_base: str = ""
) -> gr.Blocks:
    """The creator UI over ``client`` (which must point at a running Soundry API).

    Args:
        client: The API client; per-user clients derive from it with ``with_key``.
        prompts_dir: Batch files for the examples gallery (default: the repository's ``prompts/``).
        tick_s: How often an open page refreshes its jobs while any is in flight, in seconds.
        api_base: Where the browser reaches the API for live audio (``""``: the page's own origin,
            as ``soundry serve`` mounts the UI; see :mod:`ui.live`).

    Building makes no request: models, history and jobs load when a page opens.
    """
    return SoundryUI(client, prompts_dir=prompts_dir, tick_s=tick_s, api_base=api_base).build()
