"""The control groups the generation tabs share: "Sampling", "Edit-ready" and "Post-processing and output".

Each function lays out its accordion in the current Blocks context and puts its controls into the
tab's dict by the names in :data:`ui.forms.FIELDS` (see :mod:`ui.gen_tab`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr

from gen_server.contract.spec import MAX_DIFFUSION_STEPS
from ui.forms import (
    CHANNELS,
    DEFAULT_LUFS,
    DEFAULT_TOP_K,
    FORMATS,
    LOUDNESS,
    SAMPLE_RATES,
    TRIM,
    WAV_SUBTYPES,
    Kind,
    initial_model,
    model_label,
    models_of,
)


def sampling_controls(c: dict[str, Any]) -> None:
    """The "Sampling" accordion (music and sound effects): top-k, top-p, temperature, guidance; for
    diffusion models (Stable Audio) denoising steps and a negative prompt instead of the token controls
    (the model choice shows one set or the other, :mod:`ui.gen_tab`)."""
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
        with gr.Row():
            # empty unless a diffusion model is chosen (it then shows its default): a token model's
            # request, or an API call that leaves it out, sends no steps
            c["steps"] = gr.Number(
                value=None,
                minimum=1,
                maximum=MAX_DIFFUSION_STEPS,
                precision=0,
                label="Denoising steps",
                info="More: cleaner, slower (each step costs the same). Empty: the model's default.",
                visible=False,
            )
            c["negative_prompt"] = gr.Textbox(
                label="Negative prompt",
                placeholder="low quality, distortion",
                info="What the audio should not sound like.",
                visible=False,
            )


def output_controls(kind: Kind, c: dict[str, Any]) -> None:
    """The "Post-processing and output" accordion (every kind): trim, fades, loudness, format."""
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
            c["true_peak_dbtp"] = gr.Slider(-20, 0, value=-1.0, step=0.1, label="True-peak ceiling (dBTP)")
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


def edit_controls(kind: Kind, c: dict[str, Any]) -> None:
    """The "Edit-ready" accordion: exact tempo (music) and seamless loops (music, sound effects)."""
    with gr.Accordion("Edit-ready: tempo and loops", open=False), gr.Row():
        if kind == "music":
            c["tempo_bpm"] = gr.Textbox(
                value="",
                label="Tempo (BPM)",
                placeholder="free",
                info="Exact tempo: measured and time-stretched to it. Empty: the model's own.",
                elem_id="music-tempo",
            )
        c["loop"] = gr.Checkbox(
            value=False,
            label="Seamless loop",
            info="Cut on bar lines (music) or at a quiet point (effects); repeats with no click or gap.",
            elem_id=f"{kind}-loop",
        )
        if kind == "music":
            c["loop_bars"] = gr.Textbox(
                value="",
                label="Loop length (bars)",
                placeholder="whole bars of the duration",
                info="4/4 bars; needs a tempo. Replaces the duration.",
                elem_id="music-loop-bars",
            )


def model_choices(models: Sequence[Mapping[str, Any]], kind: Kind, *, commercial_only: bool = False) -> Any:
    """The model dropdown of a tab: the catalog's models of ``kind`` with their licences, starting on
    the one an API request naming no model gets (filtered to commercially usable ones when asked)."""
    shown = models_of(models, kind, commercial_only=commercial_only)
    return gr.Dropdown(choices=[(model_label(m), m["id"]) for m in shown], value=initial_model(shown, kind))
