"""The generation tabs: Music, Sound effects and Speech (one form each), their wiring and submit.

Each tab is a :class:`GenTab`: its controls by the names in :data:`ui.forms.FIELDS`, the model's
capabilities shown and applied as the model changes, examples from ``prompts/``, and "Generate"
(``api_name`` ``submit_music``, ``submit_sfx``, ``submit_speech``), which uploads the reference
audio, submits the job and remembers its id in the browser. A result card's "reuse these settings"
fills a tab through :meth:`GenTab.wire_reuse`. The "Sampling" and "Post-processing and output"
accordions are laid out by :mod:`ui.gen_controls`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from gen_server.client import ApiError, SoundryClient
from ui.forms import (
    AUDIO_FIELDS,
    DEFAULT_TOP_K,
    FIELDS,
    KIND_TITLES,
    Capabilities,
    Kind,
    build_request,
    reused_uploads,
    values_from_spec,
)
from ui.gen_controls import edit_controls, model_choices, output_controls, sampling_controls
from ui.page import Page, api_error, remember
from ui.tracker import ClientPool, Job, JobTracker

PROMPT_HELP = {
    "music": "Describe genre, instruments, mood and tempo, e.g. 'lofi hip hop with warm piano, 80 bpm'.",
    "sfx": "Describe the sound and its setting, e.g. 'a wooden door creaks open in a quiet hall'.",
}
SAMPLING_OUTPUTS = ("top_k", "top_p", "temperature", "cfg_coef", "steps", "negative_prompt")
"""Sampling controls the model choice updates: token models show top-k/p and temperature, diffusion models
steps and a negative prompt; both guidance."""


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    refs_box: Any = None  # Speech: the voice cloning references (shown for cloning models only)
    commercial_only: Any = None  # filters the model choices to commercially usable models

    @property
    def inputs(self) -> list[Any]:
        return [self.controls[name] for name in FIELDS[self.kind]]

    @property
    def settable(self) -> list[str]:
        """Controls that "reuse these settings" fills (reference audio goes by upload id instead)."""
        return [name for name in FIELDS[self.kind] if name not in AUDIO_FIELDS]

    def wire_reuse(self, button: Any, job: Job, tabs_box: Any) -> None:
        """Make ``button`` (on ``job``'s result card) fill this tab with the job's settings and show it;
        the job's reference audio is reused by upload id."""
        button.click(
            self._reuse_fn(job),
            None,
            [
                *(self.controls[n] for n in self.settable),
                *(self.controls[n] for n in FIELDS[self.kind] if n in AUDIO_FIELDS),
                self.reused,
                self.reused_note,
                self.clear_reused,
                tabs_box,
            ],
            api_visibility="private",
        )

    def _reuse_fn(self, job: Job) -> Callable[[], list[Any]]:
        spec = job.get("spec") or {}
        values = values_from_spec(spec)
        refs = reused_uploads(spec)

        def reuse() -> list[Any]:
            # a control the spec says nothing of (a token model's job: no denoising steps) stays as it is
            out: list[Any] = [values[name] if name in values else gr.skip() for name in self.settable]
            out += [None for name in FIELDS[self.kind] if name in AUDIO_FIELDS]
            names = ", ".join(k.replace("_upload", "").replace("_uploads", "") for k in refs)
            note = f"Reusing the reference audio ({names}) of job `{str(job['id'])[:8]}`." if refs else ""
            out += [refs, note, gr.Button(visible=bool(refs)), gr.Tabs(selected=self.kind)]
            return out

        return reuse


class GenTabs:
    """Builds the three generation tabs and holds what their handlers share.

    Args:
        pool: Clients per API key.
        tracker: Follows the jobs submitted here.
        examples: Example prompts per kind (:func:`ui.examples.load_examples`).
    """

    def __init__(
        self, pool: ClientPool, tracker: JobTracker, examples: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.pool = pool
        self.tracker = tracker
        self.examples = examples
        self.tabs: dict[Kind, GenTab] = {}

    # ----------------------------------------------------------------------------------- layout

    def build(self, kind: Kind) -> GenTab:
        """Lay out the tab of ``kind`` (call inside its ``gr.Tab``); wire it later with :meth:`wire`."""
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
                tab.commercial_only = gr.Checkbox(
                    value=False,
                    label="Commercial use only",
                    info="List only models whose outputs may be used commercially (outright or on a "
                    "stated condition).",
                    elem_id=f"{kind}-commercial-only",
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
                        c["voice_id"] = gr.Dropdown(
                            choices=[],
                            allow_custom_value=True,  # choices arrive from the API (Voices tab)
                            value=None,
                            label="Voice from your library",
                            info="Made in the Voices tab with its speaker's consent.",
                            elem_id="speech-voice-id",
                        )
                        gr.Markdown(
                            "Or 1 to 3 clean clips of the voice to clone (5 to 30 s each), where the server "
                            "allows cloning raw uploads (`SOUNDRY_CLONING=open`): upload or record."
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
                    tab.refs_box = refs
                else:
                    edit_controls(kind, c)
                    sampling_controls(c)
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
                output_controls(kind, c)
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
        self.tabs[kind] = tab
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

    # ----------------------------------------------------------------------------------- wiring

    def wire(self, tab: GenTab, page: Page) -> None:
        """Wire a built tab: capabilities follow the model, examples fill the form, submit queues a job."""
        kind = tab.kind
        c = tab.controls
        cap_outputs = self._capability_outputs(kind, tab)
        cap_inputs = [
            c["model"],
            page.catalog,
            *(c[n] for n in ("duration_s", "top_k", "cfg_coef", "voice", "language") if n in c),
        ]
        c["model"].change(
            self._capabilities_fn(kind),
            cap_inputs,
            cap_outputs,
            api_visibility="private",
            show_progress="hidden",
        )
        tab.commercial_only.change(
            lambda only, catalog: model_choices(list((catalog or {}).values()), kind, commercial_only=only),
            [tab.commercial_only, page.catalog],
            [c["model"]],
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
        submit_inputs = [*tab.inputs, page.key_box, page.my_jobs, tab.reused, page.catalog]
        submit_outputs = [tab.status, page.my_jobs, page.timer]
        events = [tab.submit.click] + ([c["prompt"].submit] if "prompt" in c else [])
        for i, trigger in enumerate(events):
            submitted = trigger(
                self._submit_fn(kind),
                submit_inputs,
                submit_outputs,
                api_name=f"submit_{kind}" if i == 0 else None,
                api_visibility="public" if i == 0 else "private",
                concurrency_limit=None,
            )
            page.refresh_after(submitted)

    @staticmethod
    def _capability_outputs(kind: Kind, tab: GenTab) -> list[Any]:
        c = tab.controls
        names = {
            "music": ("duration_s", *SAMPLING_OUTPUTS, "continuation", "melody"),
            "sfx": ("duration_s", *SAMPLING_OUTPUTS, "continuation"),
            "speech": ("voice", "language"),
        }[kind]
        extra = [tab.refs_box] if kind == "speech" else []
        return [tab.model_info, *(c[n] for n in names), *extra]

    @staticmethod
    def _capabilities_fn(kind: Kind) -> Callable[..., list[Any]]:
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
                        allow_custom_value=cap.voice_blending,  # a typed blend: af_bella(2)+af_sky(1)
                    ),
                    gr.Dropdown(
                        choices=languages,
                        value=language if language in languages else (languages[0] if languages else None),
                        visible=cap.shows_language,
                    ),
                    gr.Accordion(visible=cap.voice_cloning),
                ]
            duration, top_k, cfg_coef = current
            low, high = cap.min_duration_s, cap.max_duration_s
            token, diffusion = not cap.diffusion, cap.diffusion
            outputs = [
                cap.summary,
                gr.Slider(minimum=low, maximum=high, value=min(max(float(duration or low), low), high)),
                gr.Slider(
                    maximum=cap.top_k_max,
                    value=min(int(top_k if top_k is not None else DEFAULT_TOP_K), cap.top_k_max),
                    visible=token,
                ),
                gr.Slider(visible=token),  # top-p
                gr.Slider(visible=token),  # temperature
                # guidance: a diffusion model starts on its own default (Stable Audio: 7)
                gr.Slider(value=cap.guidance if cap.guidance is not None and diffusion else cfg_coef),
                gr.Number(value=cap.steps, visible=diffusion),  # a token model: empty, not sent
                gr.Textbox(visible=diffusion),  # negative prompt
                gr.Audio(visible=cap.continuation),
            ]
            if kind == "music":
                outputs.append(gr.Audio(visible=cap.melody))
            return outputs

        return update

    # ----------------------------------------------------------------------------------- handlers

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
                raise api_error(e) from e
            self.tracker.track(api_key, job)
            jobs = remember(job.id, my_jobs)
            note = (
                f"Queued {KIND_TITLES[kind].lower()} job `{job.id[:8]}` on `{job.model}` "
                f"(seed {job.spec.seed}). Follow it under *Your jobs*."
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
            return client.upload(file.read_bytes(), file.name).id

        uploads: dict[str, Any] = {
            "melody_upload": put(values.get("melody")) or reused.get("melody_upload"),
            "continuation_upload": put(values.get("continuation")) or reused.get("continuation_upload"),
        }
        if values.get("voice_id"):  # a library voice: its own clips are cloned, none are uploaded
            uploads["reference_uploads"] = []
            return uploads
        refs = [put(p) for p in [*(values.get("references") or []), values.get("reference_mic")] if p]
        uploads["reference_uploads"] = [r for r in refs if r] or list(reused.get("reference_uploads") or [])
        return uploads
