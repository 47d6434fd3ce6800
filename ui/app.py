"""The Gradio creator UI. It talks only to the HTTP API, through the project's client.

Layout: tabs Music, Sound effects, Speech (one form each), Batch and History; below them "Your jobs"
(state, queue position, live progress bar, cancel) and "Results" (cards with player, waveform,
spectrogram, seed and full spec, "reuse these settings", download in a chosen format).

How it stays live: submitting returns at once with the job id, which goes into the browser's local
storage (``gr.BrowserState``), so jobs and results survive a reload. A :class:`ui.tracker.JobTracker`
follows each running job through the API's event stream; a timer on the page reads its views twice a
second while anything is in flight. The API key (when the server has keys) is kept in the browser
too and sent with every request, so each person sees only their own jobs. While a job runs, its
audio plays as it is made (:mod:`ui.live`: the browser reads the job's stream itself).

Endpoints for ``gradio_client`` (``api_name``): ``models``, ``submit_music``, ``submit_sfx``,
``submit_speech``, ``jobs``, ``cancel``, ``history``; batches: ``submit_batch``, ``batch``,
``cancel_batch``, ``batch_archive`` (see :mod:`ui.batch_tab`).
"""

from __future__ import annotations

import datetime
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from gen_server.client import ApiError, SoundryClient
from ui.batch_tab import BatchTab
from ui.components import (
    PANEL_CSS,
    PANEL_JS,
    PICTURES_CSS,
    CardCache,
    card_header,
    job_title,
    jobs_panel,
    pictures_html,
    spec_json,
)
from ui.examples import PROMPTS_DIR, load_examples
from ui.forms import (
    AUDIO_FIELDS,
    CHANNELS,
    DEFAULT_LUFS,
    DEFAULT_TOP_K,
    FIELDS,
    FORMATS,
    KIND_TITLES,
    KINDS,
    LOUDNESS,
    SAMPLE_RATES,
    TRIM,
    WAV_SUBTYPES,
    Capabilities,
    Kind,
    build_request,
    initial_model,
    model_label,
    models_of,
    reused_uploads,
    values_from_spec,
)
from ui.live import live_players
from ui.scenes_tab import build_scenes_tab
from ui.tracker import ClientPool, Job, JobTracker, is_done

logger = logging.getLogger(__name__)

MAX_JOBS = 30  # job ids remembered per browser
MAX_SHOWN = 12  # rows in "Your jobs"
MAX_CARDS = 8  # result cards
PROMPT_HELP = {
    "music": "Describe genre, instruments, mood and tempo, e.g. 'lofi hip hop with warm piano, 80 bpm'.",
    "sfx": "Describe the sound and its setting, e.g. 'a wooden door creaks open in a quiet hall'.",
}


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error(e: ApiError) -> gr.Error:
    where = f"{e.field}: " if e.field and not e.message.startswith(f"{e.field}:") else ""
    hint = " Enter your API key under Settings." if e.status == 401 else ""
    return gr.Error(f"{where}{e.message}{hint}", title=f"{e.code} ({e.status})")


@dataclass
class GenTab:
    """The controls of one generation tab, by the names in :data:`ui.forms.FIELDS`."""

    kind: Kind
    controls: dict[str, Any] = field(default_factory=dict)
    model_info: Any = None
    submit: Any = None
    status: Any = None
    reused: Any = None
    reused_note: Any = None
    clear_reused: Any = None
    examples: Any = None

    @property
    def inputs(self) -> list[Any]:
        return [self.controls[name] for name in FIELDS[self.kind]]

    @property
    def settable(self) -> list[str]:
        """Controls that "reuse these settings" fills (reference audio goes by upload id instead)."""
        return [name for name in FIELDS[self.kind] if name not in AUDIO_FIELDS]


class SoundryUI:
    """Builds the Blocks app and holds what its handlers share (clients, job tracker, card files)."""

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
        self.cards = CardCache(self.pool)
        self.examples = load_examples(prompts_dir)
        self.batch = BatchTab(self.pool, PROMPTS_DIR if prompts_dir is None else prompts_dir)
        self.tick_s = tick_s
        self.tabs: dict[Kind, GenTab] = {}

    # ----------------------------------------------------------------------------------- layout

    def build(self) -> gr.Blocks:
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
                    self.tabs["music"] = self._gen_tab("music")
                with gr.Tab("Sound effects", id="sfx", elem_id="tab-sfx"):
                    self.tabs["sfx"] = self._gen_tab("sfx")
                with gr.Tab("Speech", id="speech", elem_id="tab-speech"):
                    self.tabs["speech"] = self._gen_tab("speech")
                with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                    self.batch.build(self.key_box)
                with gr.Tab("Scenes", id="scenes", elem_id="tab-scenes"):
                    build_scenes_tab(self.pool.base, key_box=self.key_box)
                with gr.Tab("History", id="history", elem_id="tab-history"):
                    self._history_tab()

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
            gr.Markdown("## Results")
            self._results(demo)
            self._wire(demo)
        demo.queue(default_concurrency_limit=8)
        return demo

    def _gen_tab(self, kind: Kind) -> GenTab:
        tab = GenTab(kind)
        c = tab.controls
        with gr.Row():
            with gr.Column(scale=3):
                if kind == "speech":
                    c["text"] = gr.Textbox(
                        label="Text to speak",
                        lines=4,
                        max_lines=20,
                        placeholder="Welcome to Soundry.",
                        info="Up to a few thousand characters; long text is split into sentences.",
                        elem_id="speech-text",
                    )
                else:
                    c["prompt"] = gr.Textbox(
                        label=f"{KIND_TITLES[kind]} prompt",
                        lines=2,
                        placeholder=PROMPT_HELP[kind].split("e.g. ")[1].strip("'.")
                        if kind in PROMPT_HELP
                        else "",
                        info=PROMPT_HELP[kind],
                        elem_id=f"{kind}-prompt",
                    )
                with gr.Row():
                    c["model"] = gr.Dropdown(
                        choices=[],
                        allow_custom_value=True,  # choices arrive from the API after the page loads
                        value=None,
                        label="Model",
                        info="Licence shown beside each model; non-commercial weights are marked.",
                        elem_id=f"{kind}-model",
                        scale=3,
                    )
                    if kind != "speech":
                        c["duration_s"] = gr.Slider(
                            0.5,
                            30,
                            value=8 if kind == "music" else 4,
                            step=0.5,
                            label="Duration (s)",
                            info="Clip length in seconds.",
                            elem_id=f"{kind}-duration",
                            scale=2,
                        )
                    c["seed"] = gr.Textbox(
                        value="",
                        label="Seed",
                        placeholder="random",
                        info="Same seed + same settings = same sound. Empty: random.",
                        elem_id=f"{kind}-seed",
                        scale=1,
                        min_width=140,
                    )
                tab.model_info = gr.Markdown(elem_id=f"{kind}-model-info")
                if kind == "speech":
                    with gr.Row():
                        c["voice"] = gr.Dropdown(
                            choices=[],
                            allow_custom_value=True,  # choices arrive from the API after the page loads
                            value=None,
                            label="Speaker",
                            info="Multi-speaker models only.",
                            visible=False,
                            elem_id="speech-voice",
                        )
                        c["language"] = gr.Dropdown(
                            choices=[],
                            allow_custom_value=True,  # choices arrive from the API after the page loads
                            value=None,
                            label="Language",
                            info="Multilingual models only.",
                            visible=False,
                            elem_id="speech-language",
                        )
                        c["speed"] = gr.Slider(
                            0.25,
                            4.0,
                            value=1.0,
                            step=0.05,
                            label="Speed",
                            info="Speaking rate multiplier.",
                            elem_id="speech-speed",
                        )
                    with gr.Accordion("Voice cloning references", open=True, visible=False) as refs:
                        gr.Markdown(
                            "1 to 3 clean clips of the voice to clone (5 to 30 s each): upload or record."
                        )
                        c["references"] = gr.File(
                            label="Reference clips (upload)",
                            file_count="multiple",
                            file_types=["audio"],
                            elem_id="speech-references",
                        )
                        c["reference_mic"] = gr.Audio(
                            sources=["microphone", "upload"],
                            type="filepath",
                            label="Record a reference",
                            elem_id="speech-reference-mic",
                        )
                    self._refs_box = refs
                else:
                    self._sampling(c)
                    with gr.Accordion("Reference audio", open=False):
                        c["continuation"] = gr.Audio(
                            sources=["upload", "microphone"],
                            type="filepath",
                            label="Audio to continue",
                            elem_id=f"{kind}-continuation",
                        )
                        if kind == "music":
                            c["melody"] = gr.Audio(
                                sources=["upload", "microphone"],
                                type="filepath",
                                label="Melody reference (melody models)",
                                visible=False,
                                elem_id="music-melody",
                            )
                        gr.Markdown(
                            "Continuation extends the clip you give (any model that can continue). "
                            + (
                                "Melody conditioning follows the tune of a reference (melody models only)."
                                if kind == "music"
                                else ""
                            )
                        )
                self._post(kind, c)
                tab.reused = gr.State({})
                with gr.Row():
                    tab.reused_note = gr.Markdown(elem_id=f"{kind}-reused-note")
                    tab.clear_reused = gr.Button("Forget reused reference audio", size="sm", visible=False)
                tab.submit = gr.Button(
                    "Speak" if kind == "speech" else f"Generate {KIND_TITLES[kind].lower()}",
                    variant="primary",
                    elem_id=f"{kind}-generate",
                )
                tab.status = gr.Markdown(elem_id=f"{kind}-status")
            with gr.Column(scale=2, min_width=260):
                tab.examples = gr.Radio(
                    choices=[(self._example_label(e), str(i)) for i, e in enumerate(self.examples[kind])],
                    value=None,
                    label="Examples",
                    info="From the batch files in prompts/. Pick one to fill the form.",
                    elem_id=f"{kind}-examples",
                )
        return tab

    @staticmethod
    def _example_label(example: dict[str, Any]) -> str:
        if "text" in example:
            return _shorten(example["text"], 90)
        return f"{_shorten(example['prompt'], 80)} ({example['duration_s']:g} s)"

    def _example_fn(self, kind: Kind) -> Callable[[str | None], list[Any]]:
        def fill(choice: str | None) -> list[Any]:
            if choice is None or not choice.isdigit() or int(choice) >= len(self.examples[kind]):
                return [gr.skip()] * (1 if kind == "speech" else 2)
            example = self.examples[kind][int(choice)]
            if kind == "speech":
                return [example["text"]]
            return [example["prompt"], example["duration_s"]]

        return fill

    @staticmethod
    def _sampling(c: dict[str, Any]) -> None:
        with gr.Accordion("Sampling", open=False):
            with gr.Row():
                c["top_k"] = gr.Slider(
                    0,
                    4096,
                    value=DEFAULT_TOP_K,
                    step=1,
                    label="Top-k",
                    info="Sample among the k likeliest tokens (0: off). Capped by the model's codebook.",
                )
                c["top_p"] = gr.Slider(
                    0.0,
                    1.0,
                    value=0.0,
                    step=0.01,
                    label="Top-p",
                    info="Nucleus sampling mass (0: off, top-k is used).",
                )
            with gr.Row():
                c["temperature"] = gr.Slider(
                    0.05,
                    5.0,
                    value=1.0,
                    step=0.05,
                    label="Temperature",
                    info="Higher: more varied, lower: safer.",
                )
                c["cfg_coef"] = gr.Slider(
                    0.0,
                    20.0,
                    value=3.0,
                    step=0.1,
                    label="Guidance (CFG)",
                    info="How strongly to follow the prompt.",
                )

    @staticmethod
    def _post(kind: Kind, c: dict[str, Any]) -> None:
        with gr.Accordion("Post-processing and output", open=False):
            with gr.Row():
                c["trim"] = gr.Radio(
                    list(TRIM), value="default", label="Trim silence", info="Default depends on the kind."
                )
                c["fade_in_s"] = gr.Textbox(
                    value="", label="Fade in (s)", placeholder="default", info="Seconds; empty: the default."
                )
                c["fade_out_s"] = gr.Textbox(
                    value="", label="Fade out (s)", placeholder="default", info="Seconds; empty: the default."
                )
            with gr.Row():
                c["loudness"] = gr.Radio(
                    list(LOUDNESS),
                    value="default",
                    label="Loudness",
                    info="Normalise to a LUFS target or to the peak ceiling.",
                )
                c["target_lufs"] = gr.Slider(
                    -70,
                    -5,
                    value=DEFAULT_LUFS,
                    step=0.5,
                    label="Target loudness (LUFS)",
                    info="Used with 'LUFS target'.",
                    interactive=False,
                )
                c["true_peak_dbtp"] = gr.Slider(
                    -20, 0, value=-1.0, step=0.1, label="True-peak ceiling (dBTP)"
                )
            with gr.Row():
                c["sample_rate"] = gr.Dropdown(
                    list(SAMPLE_RATES),
                    value="native",
                    label="Sample rate (Hz)",
                    info="'native': the model's own rate.",
                )
                c["channels"] = gr.Radio(list(CHANNELS), value="native", label="Channels")
                c["format"] = gr.Dropdown(
                    list(FORMATS), value="wav", label="Output format", elem_id=f"{kind}-format"
                )
                c["wav_subtype"] = gr.Dropdown(
                    list(WAV_SUBTYPES), value="pcm16", label="WAV sample format", info="WAV output only."
                )

    def _history_tab(self) -> None:
        gr.Markdown("Your jobs on this server, newest first (from the API, with your key).")
        with gr.Row(equal_height=True):
            self.hist_kind = gr.Dropdown(["all", *KINDS], value="all", label="Kind", elem_id="history-kind")
            self.hist_state = gr.Dropdown(
                ["all", "queued", "running", "succeeded", "failed", "cancelled"],
                value="all",
                label="State",
                elem_id="history-state",
            )
            self.hist_refresh = gr.Button("Refresh history", elem_id="history-refresh")
        self.hist_table = gr.Dataframe(
            headers=["created", "kind", "model", "state", "prompt or text", "seed", "seconds", "job id"],
            value=[],
            interactive=False,
            wrap=True,
            label="History",
            elem_id="history-table",
        )
        with gr.Row(equal_height=True):
            self.hist_pick = gr.Dropdown(
                choices=[],
                allow_custom_value=True,  # choices arrive from the API after the page loads
                value=None,
                label="Job",
                info="Pick one (or click a row) to show it under Results.",
                elem_id="history-pick",
                scale=3,
            )
            self.hist_open = gr.Button("Show in results", elem_id="history-open", scale=1)

    def _results(self, demo: gr.Blocks) -> None:
        @gr.render(
            inputs=[self.done, self.key_box, self.catalog],
            triggers=[demo.load, self.done.change],
            concurrency_limit=4,
        )
        def cards(done: list[Job], api_key: str, catalog: dict[str, Any]) -> None:
            if not done:
                gr.Markdown("Finished generations appear here as cards.", elem_id="soundry-no-results")
                return
            for job in done:
                self._card(job, api_key, (catalog.get(str(job.get("model"))) or {}).get("licence"))

    def _card(self, job: Job, api_key: str, licence: str | None) -> None:
        job_id = str(job["id"])
        kind: Kind = job.get("kind", "music")
        with gr.Group(elem_classes=["soundry-card"], elem_id=f"card-{job_id}", key=f"card-{job_id}"):
            gr.Markdown(card_header(job, licence), key=f"head-{job_id}", elem_classes=["soundry-card-head"])
            if job.get("state") == "succeeded":
                try:
                    files = self.cards.card(api_key, job)
                except ApiError as e:
                    gr.Markdown(f"Audio unavailable: {e.message}", key=f"err-{job_id}")
                else:
                    gr.Audio(
                        str(files.audio),
                        label=f"Audio of job {job_id[:8]}",
                        interactive=False,
                        key=f"audio-{job_id}",
                        elem_id=f"audio-{job_id}",
                        buttons=["download"],
                    )
                    gr.HTML(
                        pictures_html(files, job_id),
                        css_template=PICTURES_CSS,
                        js_on_load=None,
                        key=f"pictures-{job_id}",
                        elem_id=f"pictures-{job_id}",
                    )
                    fmt = str((job.get("result") or {}).get("format") or "wav")
                    with gr.Row(equal_height=True):
                        pick = gr.Dropdown(
                            list(FORMATS),
                            value=fmt,
                            label="Download format",
                            interactive=True,
                            key=f"fmt-{job_id}",
                            elem_id=f"fmt-{job_id}",
                        )
                        first = self.cards.download(api_key, job_id, fmt) if fmt != "wav" else files.audio
                        button = gr.DownloadButton(
                            f"Download {fmt.upper()}",
                            value=str(first),
                            key=f"dl-{job_id}",
                            elem_id=f"dl-{job_id}",
                        )

                    def prepare(chosen: str, key: str) -> Any:
                        try:
                            path = self.cards.download(key, job_id, chosen)
                        except ApiError as e:
                            raise _error(e) from e
                        return gr.DownloadButton(f"Download {chosen.upper()}", value=str(path))

                    pick.change(
                        prepare,
                        [pick, self.key_box],
                        [button],
                        api_visibility="private",
                        show_progress="minimal",
                    )
            with gr.Accordion("Full spec", open=False, key=f"spec-acc-{job_id}"):
                gr.Code(
                    spec_json(job),
                    language="json",
                    label="Spec (JSON)",
                    interactive=False,
                    key=f"code-{job_id}",
                )
            reuse = gr.Button(
                "Reuse these settings", key=f"reuse-{job_id}", elem_id=f"reuse-{job_id}", size="sm"
            )
            tab = self.tabs.get(kind)
            if tab is not None:
                reuse.click(
                    self._reuse_fn(tab, job),
                    None,
                    [
                        *(tab.controls[n] for n in tab.settable),
                        *(tab.controls[n] for n in FIELDS[kind] if n in AUDIO_FIELDS),
                        tab.reused,
                        tab.reused_note,
                        tab.clear_reused,
                        self.tabs_box,
                    ],
                    api_visibility="private",
                )

    # ----------------------------------------------------------------------------------- wiring

    def _wire(self, demo: gr.Blocks) -> None:
        tab_models = [self.tabs[k].controls["model"] for k in KINDS]
        hist_outputs = [self.hist_table, self.hist_pick]
        tick_outputs = [self.panel, self.cancel_pick, self.shown, self.done, self.timer]
        tick_inputs = [self.my_jobs, self.key_box, self.shown]

        load = demo.load(lambda key: key or "", [self.stored_key], [self.key_box], api_visibility="private")
        load.then(
            self.load_models, [self.key_box], [self.connection, self.catalog, *tab_models], api_name="models"
        ).then(
            self.history, [self.key_box, self.hist_kind, self.hist_state], hist_outputs, api_name="history"
        ).then(self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden")

        for trigger in (self.connect.click, self.key_box.submit):
            trigger(
                lambda key: (key or "").strip(), [self.key_box], [self.stored_key], api_visibility="private"
            ).then(
                self.load_models,
                [self.key_box],
                [self.connection, self.catalog, *tab_models],
                api_visibility="private",
            ).then(
                self.history,
                [self.key_box, self.hist_kind, self.hist_state],
                hist_outputs,
                api_visibility="private",
            ).then(
                self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden"
            ).then(
                self.batch.list_batches,
                [self.key_box, self.batch.batch_id],
                [self.batch.pick],
                api_visibility="private",
            )

        for kind, tab in self.tabs.items():
            self._wire_tab(kind, tab)
        self.batch.on_load(demo)

        self.timer.tick(
            self.tick,
            tick_inputs,
            tick_outputs,
            api_name="jobs",
            show_progress="hidden",
            concurrency_limit=None,
            trigger_mode="once",
        )
        self.cancel_btn.click(
            self.cancel, [self.cancel_pick, self.key_box], [self.cancel_note], api_name="cancel"
        ).then(self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden")
        self.panel.click(
            self.cancel_clicked, [self.key_box], [self.cancel_note], api_visibility="private"
        ).then(self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden")
        self.clear_btn.click(
            self.clear_finished, [self.my_jobs, self.shown], [self.my_jobs], api_visibility="private"
        ).then(self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden")

        for trigger in (self.hist_refresh.click, self.hist_kind.change, self.hist_state.change):
            trigger(
                self.history,
                [self.key_box, self.hist_kind, self.hist_state],
                hist_outputs,
                api_visibility="private",
            )
        self.hist_table.select(self.history_selected, None, [self.hist_pick], api_visibility="private")
        self.hist_open.click(
            self.show_job, [self.hist_pick, self.my_jobs], [self.my_jobs], api_visibility="private"
        ).then(self.tick, tick_inputs, tick_outputs, api_visibility="private", show_progress="hidden")

    def _wire_tab(self, kind: Kind, tab: GenTab) -> None:
        c = tab.controls
        cap_outputs = self._capability_outputs(kind, tab)
        cap_inputs = [
            c["model"],
            self.catalog,
            *(c[n] for n in ("duration_s", "top_k", "voice", "language") if n in c),
        ]
        c["model"].change(
            self._capabilities_fn(kind, tab),
            cap_inputs,
            cap_outputs,
            api_visibility="private",
            show_progress="hidden",
        )
        c["format"].change(
            lambda f: gr.Dropdown(interactive=f == "wav"),
            [c["format"]],
            [c["wav_subtype"]],
            api_visibility="private",
            show_progress="hidden",
        )
        c["loudness"].change(
            lambda mode: gr.Slider(interactive=mode == "LUFS target"),
            [c["loudness"]],
            [c["target_lufs"]],
            api_visibility="private",
            show_progress="hidden",
        )
        example_targets = [c["text"]] if kind == "speech" else [c["prompt"], c["duration_s"]]
        tab.examples.input(
            self._example_fn(kind),
            [tab.examples],
            example_targets,
            api_visibility="private",
            show_progress="hidden",
        )
        tab.clear_reused.click(
            lambda: ({}, "", gr.Button(visible=False)),
            None,
            [tab.reused, tab.reused_note, tab.clear_reused],
            api_visibility="private",
        )
        submit_inputs = [*tab.inputs, self.key_box, self.my_jobs, tab.reused, self.catalog]
        submit_outputs = [tab.status, self.my_jobs, self.timer]
        events = [tab.submit.click] + ([c["prompt"].submit] if "prompt" in c else [])
        for i, trigger in enumerate(events):
            trigger(
                self._submit_fn(kind),
                submit_inputs,
                submit_outputs,
                api_name=f"submit_{kind}" if i == 0 else None,
                api_visibility="public" if i == 0 else "private",
                concurrency_limit=None,
            ).then(
                self.tick,
                [self.my_jobs, self.key_box, self.shown],
                [self.panel, self.cancel_pick, self.shown, self.done, self.timer],
                api_visibility="private",
                show_progress="hidden",
            )

    def _capability_outputs(self, kind: Kind, tab: GenTab) -> list[Any]:
        c = tab.controls
        names = {
            "music": ("duration_s", "top_k", "continuation", "melody"),
            "sfx": ("duration_s", "top_k", "continuation"),
            "speech": ("voice", "language"),
        }[kind]
        extra = [self._refs_box] if kind == "speech" else []
        return [tab.model_info, *(c[n] for n in names), *extra]

    def _capabilities_fn(self, kind: Kind, tab: GenTab) -> Callable[..., list[Any]]:
        def update(model: str | None, catalog: dict[str, Any], *current: Any) -> list[Any]:
            cap = Capabilities.of(catalog.get(model or ""))
            if kind == "speech":
                voice, language = current
                speakers, languages = list(cap.speakers), list(cap.languages)
                return [
                    cap.summary,
                    gr.Dropdown(
                        choices=speakers,
                        value=voice if voice in speakers else (speakers[0] if speakers else None),
                        visible=cap.shows_voice,
                    ),
                    gr.Dropdown(
                        choices=languages,
                        value=language if language in languages else (languages[0] if languages else None),
                        visible=cap.shows_language,
                    ),
                    gr.Accordion(visible=cap.voice_cloning),
                ]
            duration, top_k = current
            low, high = cap.min_duration_s, cap.max_duration_s
            outputs = [
                cap.summary,
                gr.Slider(minimum=low, maximum=high, value=min(max(float(duration or low), low), high)),
                gr.Slider(
                    maximum=cap.top_k_max,
                    value=min(int(top_k if top_k is not None else DEFAULT_TOP_K), cap.top_k_max),
                ),
                gr.Audio(visible=cap.continuation),
            ]
            if kind == "music":
                outputs.append(gr.Audio(visible=cap.melody))
            return outputs

        return update

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
        catalog = {m["id"]: m for m in models}
        updates = [
            gr.Dropdown(
                choices=[(model_label(m), m["id"]) for m in models_of(models, kind)],
                value=initial_model(models, kind),
            )
            for kind in KINDS
        ]
        status = f"Connected to {client.base_url}: {len(models)} models." + (
            " Signed in with your API key." if (api_key or "").strip() else ""
        )
        return [status, catalog, *updates]

    def _submit_fn(self, kind: Kind) -> Callable[..., tuple[str, list[str], Any]]:
        names = FIELDS[kind]

        def submit(*args: Any) -> tuple[str, list[str], Any]:
            *control_values, api_key, my_jobs, reused, catalog = args
            values = dict(zip(names, control_values, strict=True))
            entry = (catalog or {}).get(values.get("model") or "")
            reused = reused or {}
            if entry:  # the catalog arrives with the page; API callers without it send what they give
                values, reused = Capabilities.of(entry).applicable(values, reused)
            client = self.pool.get(api_key)
            try:
                uploads = self._uploads(client, values, reused)
                job = client.submit(build_request(kind, values, uploads))
            except ApiError as e:
                raise _error(e) from e
            self.tracker.track(api_key, job)
            jobs = [job["id"], *(j for j in (my_jobs or []) if j != job["id"])][:MAX_JOBS]
            note = (
                f"Queued {KIND_TITLES[kind].lower()} job `{job['id'][:8]}` on `{job['model']}` "
                f"(seed {job['spec']['seed']}). Follow it under *Your jobs*."
            )
            return note, jobs, gr.Timer(active=True)

        submit.__name__ = f"submit_{kind}"
        # Named parameters (not *args), so the API page and gradio_client show the controls' names.
        submit.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for name in (*names, "api_key", "my_jobs", "reused", "catalog")
            ]
        )
        return submit

    @staticmethod
    def _uploads(client: SoundryClient, values: dict[str, Any], reused: dict[str, Any]) -> dict[str, Any]:
        """Upload the reference audio in the form (``POST /v1/uploads``); reused ids fill the gaps."""

        def put(path: str | None) -> str | None:
            if not path:
                return None
            file = Path(path)
            return str(client.upload(file.read_bytes(), file.name)["id"])

        uploads: dict[str, Any] = {
            "melody_upload": put(values.get("melody")) or reused.get("melody_upload"),
            "continuation_upload": put(values.get("continuation")) or reused.get("continuation_upload"),
        }
        refs = [put(p) for p in [*(values.get("references") or []), values.get("reference_mic")] if p]
        uploads["reference_uploads"] = [r for r in refs if r] or list(reused.get("reference_uploads") or [])
        return uploads

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
            raise _error(e) from e
        self.tracker.track(api_key, job)
        return f"Job `{job_id[:8]}` is {job['state']}."

    def cancel_clicked(self, api_key: str | None, evt: gr.EventData) -> str:
        data = evt._data if isinstance(evt._data, dict) else {}
        return self.cancel(str(data.get("job") or ""), api_key)

    @staticmethod
    def clear_finished(my_jobs: Sequence[str] | None, shown: dict[str, Any] | None) -> list[str]:
        inflight = set((shown or {}).get("inflight") or [])
        return [j for j in (my_jobs or []) if j in inflight]

    def history(self, api_key: str | None, kind: str | None, state: str | None) -> list[Any]:
        """The caller's jobs from ``GET /v1/jobs`` as table rows (newest first) and a job picker."""
        try:
            jobs = self.pool.get(api_key).list(
                kind=None if kind in (None, "all") else kind,
                state=None if state in (None, "all") else state,
                limit=50,
            )
        except ApiError as e:
            if e.status == 401:
                return [[], gr.Dropdown(choices=[], value=None)]
            raise _error(e) from e
        except Exception as e:
            logger.warning("ui: history unavailable: %s", e)
            return [[], gr.Dropdown(choices=[], value=None)]
        rows = []
        for job in jobs:
            spec, result = job.get("spec") or {}, job.get("result") or {}
            created = datetime.datetime.fromtimestamp(float(job.get("created_at", 0))).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            seconds = result.get("duration_s") or spec.get("duration_s")
            rows.append(
                [
                    created,
                    job.get("kind"),
                    job.get("model"),
                    job.get("state"),
                    str(spec.get("prompt", ""))[:200],
                    spec.get("seed"),
                    round(float(seconds), 2) if seconds else None,
                    job.get("id"),
                ]
            )
        choices = [(f"{job_title(j, 40)} · {j['state']} · {str(j['id'])[:8]}", str(j["id"])) for j in jobs]
        return [rows, gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)]

    @staticmethod
    def history_selected(evt: gr.SelectData) -> Any:
        row = getattr(evt, "row_value", None)
        if row:
            return gr.Dropdown(value=str(row[-1]))
        return gr.skip()

    @staticmethod
    def show_job(job_id: str | None, my_jobs: Sequence[str] | None) -> list[str]:
        if not job_id:
            return list(my_jobs or [])
        return [job_id, *(j for j in (my_jobs or []) if j != job_id)][:MAX_JOBS]

    def _reuse_fn(self, tab: GenTab, job: Job) -> Callable[[], list[Any]]:
        spec = job.get("spec") or {}
        values = values_from_spec(spec)
        refs = reused_uploads(spec)

        def reuse() -> list[Any]:
            out: list[Any] = [values.get(name) for name in tab.settable]
            out += [None for name in FIELDS[tab.kind] if name in AUDIO_FIELDS]
            names = ", ".join(k.replace("_upload", "").replace("_uploads", "") for k in refs)
            note = f"Reusing the reference audio ({names}) of job `{str(job['id'])[:8]}`." if refs else ""
            out += [refs, note, gr.Button(visible=bool(refs)), gr.Tabs(selected=tab.kind)]
            return out

        return reuse


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
