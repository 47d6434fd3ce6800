"""The Gradio creator UI; it talks only to the HTTP API through the project's client."""

from __future__ import annotations

import io
import logging
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf

from gen_server.client import ApiError, SoundryClient

logger = logging.getLogger(__name__)


def _run(client: SoundryClient, request: dict[str, Any]) -> tuple[tuple[int, np.ndarray] | None, str]:
    try:
        job, data = client.generate(request)
    except ApiError as e:
        raise gr.Error(f"{e.field + ': ' if e.field else ''}{e.message}") from e
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    result = job["result"]
    info = f"job {job['id']} · model {job['model']} · seed {result['seed']} · {result['duration_s']:.2f} s"
    return (rate, samples), info


def build_ui(client: SoundryClient) -> gr.Blocks:
    """A tab per kind; each submits a job through the API and plays the result."""
    with gr.Blocks(title="Soundry") as demo:
        gr.Markdown("# Soundry\nGenerate speech, sound effects and music on your own server.")
        with gr.Tab("Music"):
            m_prompt = gr.Textbox(label="Music prompt", placeholder="lofi hip hop with warm piano")
            m_model = gr.Textbox(label="Model (empty: default)", value="")
            m_duration = gr.Slider(1, 60, value=5, step=0.5, label="Duration (s)")
            m_seed = gr.Number(label="Seed (empty: random)", value=None, precision=0)
            m_button = gr.Button("Generate music", variant="primary")
            m_audio = gr.Audio(label="Music result", type="numpy")
            m_info = gr.Markdown()
        with gr.Tab("Sound effects"):
            s_prompt = gr.Textbox(label="Sound effect prompt", placeholder="a door creaks open")
            s_model = gr.Textbox(label="Model (empty: default)", value="")
            s_duration = gr.Slider(0.5, 30, value=3, step=0.5, label="Duration (s)")
            s_seed = gr.Number(label="Seed (empty: random)", value=None, precision=0)
            s_button = gr.Button("Generate sound effect", variant="primary")
            s_audio = gr.Audio(label="Sound effect result", type="numpy")
            s_info = gr.Markdown()
        with gr.Tab("Speech"):
            t_text = gr.Textbox(label="Text to speak", lines=4, placeholder="Welcome to Soundry.")
            t_model = gr.Textbox(label="Model (empty: bundled voice)", value="")
            t_seed = gr.Number(label="Seed (empty: random)", value=None, precision=0)
            t_button = gr.Button("Speak", variant="primary")
            t_audio = gr.Audio(label="Speech result", type="numpy")
            t_info = gr.Markdown()

        def gen(kind: str, text: str, model: str, duration: float | None, seed: float | None) -> Any:
            req: dict[str, Any] = {"kind": kind}
            req["text" if kind == "speech" else "prompt"] = text
            if model.strip():
                req["model"] = model.strip()
            if duration is not None:
                req["duration_s"] = float(duration)
            if seed is not None:
                req["seed"] = int(seed)
            return _run(client, req)

        m_button.click(
            lambda *a: gen("music", *a), [m_prompt, m_model, m_duration, m_seed], [m_audio, m_info]
        )
        s_button.click(lambda *a: gen("sfx", *a), [s_prompt, s_model, s_duration, s_seed], [s_audio, s_info])
        t_button.click(
            lambda text, model, seed: gen("speech", text, model, None, seed),
            [t_text, t_model, t_seed],
            [t_audio, t_info],
        )
    return demo
