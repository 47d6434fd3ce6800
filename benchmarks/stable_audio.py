"""Stable Audio Open 1.0 on CPU: diffusers directly vs Soundry end to end, batch of 4 vs one at a time.

The model is a real-size random-weight stable-audio-open-1.0 (:data:`workers.tiny.stable_audio.REAL_SIZES`:
DiT 24 layers 1536 wide over 1024 latent frames, Oobleck VAE 128 channels, T5-base encoder; ~1.2B
parameters, float32), written once with the library's own ``save_pretrained`` into
``benchmarks/.cache/models/stable-audio-open-1.0`` and loaded with ``StableAudioPipeline.from_pretrained``
(random weights cost exactly the trained model's compute). Its scheduler is ``EDMDPMSolverMultistepScheduler``
with the released sigmas: the released ``CosineDPMSolverMultistepScheduler`` needs ``torchsde``, which this
installation lacks (see :mod:`workers.tiny.stable_audio`); the scheduler costs next to nothing beside the
DiT.

Each side runs in its own fresh process, one after the other (one ~5 GB copy of the model at a time):

* ``direct``: ``StableAudioPipeline.from_pretrained(folder)`` and one ``pipe(prompt, audio_end_in_s=10,
  num_inference_steps=N, guidance_scale=7, generator=...)`` call: what diffusers costs by itself.
* ``soundry``: Soundry's backend (:class:`workers.backends.stable_audio.StableAudioBackend`: the same
  loader, per-row generators, per-step progress, per-row VAE decoding) and the job's finish
  (:func:`workers.pipeline.finish`: post-processing, watermark, WAV encoding, C2PA-free storage) for one
  clip, then four compatible requests through ``generate_batch`` (one pipeline call) and their finishes.

Few denoising steps (``--steps``, default 4; the model card's default is 100) keep a 1.2B-parameter DiT
on a 2-core CPU within minutes; every step costs the same, so time per step is reported as well. The
pipeline always denoises and decodes its whole 47.55 s window, whatever the requested length, so a 10 s
clip costs what a 47 s clip costs. "One at a time" for four clips is four times the measured solo clip.

Run: ``nice -n 10 uv run --frozen python -m benchmarks.stable_audio --threads 2`` (writes
``benchmarks/results/stable_audio.{json,md}``; the first run writes the ~4.8 GB checkpoint).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SFX_PROMPT, load_average, machine_info, run_child
from benchmarks.procmem import status_kb

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = HERE / ".cache" / "models"
DEFAULT_OUT = HERE / "results" / "stable_audio.json"
MODEL_ID = "stable-audio-open-1.0"
FORMAT_VERSION = 1
CLIP_S = 10.0
GUIDANCE = 7.0
PROMPTS = (
    SFX_PROMPT,
    "warm analog synth pads, slow",
    "a dog barks twice in the distance",
    "rain on a tin roof",
)


def _rss_mb() -> dict[str, float]:
    kb = status_kb()
    return {"rss_mb": round(kb.get("VmRSS", 0) / 1024, 1), "peak_mb": round(kb.get("VmHWM", 0) / 1024, 1)}


def write_checkpoint(models_dir: Path) -> bool:
    """The real-size random pipeline at ``models_dir/stable-audio-open-1.0`` (skipped when complete)."""
    from benchmarks.realsize import SEED, _write_once
    from workers.tiny.stable_audio import REAL_SIZES, write_stable_audio

    manifest = {
        "model": "stable-audio-open-1.0-size",
        "format": FORMAT_VERSION,
        "seed": SEED,
        "sizes": REAL_SIZES,
    }
    return _write_once(models_dir / MODEL_ID, manifest, lambda tmp: write_stable_audio(tmp, REAL_SIZES))


def _direct(folder: Path, steps: int) -> dict[str, Any]:
    import torch
    from diffusers import StableAudioPipeline

    started = time.perf_counter()
    pipe = StableAudioPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    after_load = _rss_mb()
    started = time.perf_counter()
    audio = pipe(
        PROMPTS[0],
        audio_end_in_s=CLIP_S,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(1),
    ).audios
    clip_s = time.perf_counter() - started
    return {
        "load_s": round(load_s, 1),
        "rss_after_load_mb": after_load["rss_mb"],
        "clip_s": round(clip_s, 2),
        "shape": list(audio.shape),
        "weights_mb": round(
            sum(
                p.numel() * p.element_size()
                for m in pipe.components.values()
                if isinstance(m, torch.nn.Module)
                for p in m.parameters()
            )
            / 1024**2,
            1,
        ),
    }


def _soundry(models_dir: Path, steps: int) -> dict[str, Any]:
    from gen_server.audio.watermark import KeyedWatermarker
    from gen_server.contract.catalog import build_catalog
    from gen_server.contract.spec import JobRequest, build_spec
    from gen_server.settings import Settings
    from gen_server.storage import open_store
    from workers.backends.stable_audio import StableAudioBackend
    from workers.pipeline import finish, gen_request

    settings = Settings(data_dir=models_dir.parent / "data", models_dir=models_dir, allow_downloads=False)
    catalog = build_catalog(settings)
    store = open_store(settings)
    key = b"benchmark-watermark-key"
    marker = KeyedWatermarker(key)
    backend = StableAudioBackend(catalog.get(MODEL_ID), settings)
    started = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - started
    after_load = _rss_mb()

    def spec(i: int, prompt: str) -> Any:
        body = {"kind": "sfx", "model": MODEL_ID, "prompt": prompt, "duration_s": CLIP_S, "seed": i + 1}
        body["sampling"] = {"steps": steps, "cfg_coef": GUIDANCE}
        return build_spec(JobRequest.model_validate(body), catalog, job_id=f"bench-{time.time_ns()}-{i}")

    progress: list[float] = []
    one = spec(0, PROMPTS[0])
    started = time.perf_counter()
    audio = backend.generate(gen_request(one, store), progress=progress.append)
    generated = time.perf_counter() - started
    result = finish(one, audio, watermarker=marker, watermark_key=key, store=store, generation_s=generated)
    solo_s = time.perf_counter() - started
    specs = [spec(i, p) for i, p in enumerate(PROMPTS)]
    started = time.perf_counter()
    clips = backend.generate_batch([gen_request(s, store) for s in specs])
    batch_generated = time.perf_counter() - started
    for s, clip in zip(specs, clips, strict=True):
        finish(
            s,
            clip,
            watermarker=marker,
            watermark_key=key,
            store=store,
            generation_s=batch_generated,
            batch_size=4,
        )
    batch_s = time.perf_counter() - started
    return {
        "load_s": round(load_s, 1),
        "rss_after_load_mb": after_load["rss_mb"],
        "weights_mb": round(backend.memory_bytes() / 1024**2, 1),
        "clip_s": round(solo_s, 2),
        "clip_generate_s": round(generated, 2),
        "clip_finish_s": round(solo_s - generated, 2),
        "progress_reports": len(progress),
        "result": {
            "channels": result.channels,
            "sample_rate": result.sample_rate,
            "duration_s": result.duration_s,
        },
        "batch4_s": round(batch_s, 2),
        "batch4_generate_s": round(batch_generated, 2),
    }


def _paired(models_dir: Path, steps: int, pairs: int = 1) -> dict[str, Any]:
    """Overhead under equal load: the backend's own diffusers pipeline object called directly, then the
    same request through the backend and the job's finish, alternately, in one process (machine load
    drifts on a shared CPU; one ~5 GB model copy)."""
    import torch

    from gen_server.audio.watermark import KeyedWatermarker
    from gen_server.contract.catalog import build_catalog
    from gen_server.contract.spec import JobRequest, build_spec
    from gen_server.settings import Settings
    from gen_server.storage import open_store
    from workers.backends.stable_audio import StableAudioBackend
    from workers.pipeline import finish, gen_request

    settings = Settings(data_dir=models_dir.parent / "data", models_dir=models_dir, allow_downloads=False)
    catalog = build_catalog(settings)
    store, key = open_store(settings), b"benchmark-watermark-key"
    backend = StableAudioBackend(catalog.get(MODEL_ID), settings)
    backend.load()
    body = {"kind": "sfx", "model": MODEL_ID, "prompt": PROMPTS[0], "duration_s": CLIP_S, "seed": 1}
    body["sampling"] = {"steps": steps, "cfg_coef": GUIDANCE}
    direct: list[float] = []
    soundry: list[float] = []
    for i in range(pairs):
        started = time.perf_counter()
        backend._pipe(  # the same diffusers object the backend holds, called as its docs show
            PROMPTS[0],
            audio_end_in_s=CLIP_S,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            generator=torch.Generator("cpu").manual_seed(1),
        )
        direct.append(time.perf_counter() - started)
        spec = build_spec(JobRequest.model_validate(body), catalog, job_id=f"paired-{time.time_ns()}-{i}")
        started = time.perf_counter()
        audio = backend.generate(gen_request(spec, store))
        finish(
            spec, audio, watermarker=KeyedWatermarker(key), watermark_key=key, store=store, generation_s=0.0
        )
        soundry.append(time.perf_counter() - started)
    return {"direct_s": [round(t, 2) for t in direct], "soundry_s": [round(t, 2) for t in soundry]}


def child(side: str, models_dir: Path, steps: int, threads: int | None) -> dict[str, Any]:
    """Measure one side (``direct``, ``soundry`` or ``paired``) in this process."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    before = _rss_mb()
    if side == "paired":
        return {
            **_paired(models_dir, steps),
            "torch_threads": torch.get_num_threads(),
            "load_average": load_average(),
        }
    out = _direct(models_dir / MODEL_ID, steps) if side == "direct" else _soundry(models_dir, steps)
    out.update(
        torch_threads=torch.get_num_threads(),
        rss_before_load_mb=before["rss_mb"],
        peak_rss_mb=_rss_mb()["peak_mb"],
    )
    return out


def run(models_dir: Path, steps: int, threads: int | None) -> dict[str, Any]:
    """Write the checkpoint if needed, then measure each side in a child process."""
    started = time.perf_counter()
    written = write_checkpoint(models_dir)
    out: dict[str, Any] = {
        "machine": machine_info(),
        "model": "stable-audio-open-1.0 architecture, random weights, float32",
        "clip_s": CLIP_S,
        "steps": steps,
        "guidance": GUIDANCE,
        "checkpoint_written_s": round(time.perf_counter() - started, 1) if written else 0.0,
        "sides": {},
    }
    for side in ("direct", "soundry"):
        extra = ["--steps", str(steps)] + (["--threads", str(threads)] if threads else [])
        result = run_child("benchmarks.stable_audio", side, models_dir, *extra)
        out["sides"][side] = result
        logging.getLogger(__name__).info("%s: %s", side, result)
    direct, soundry = out["sides"]["direct"], out["sides"]["soundry"]
    out["overhead_pct"] = round(100 * (soundry["clip_s"] / direct["clip_s"] - 1), 1)
    out["one_at_a_time_4_s"] = round(4 * soundry["clip_s"], 1)
    out["batch4_speedup"] = round(4 * soundry["clip_s"] / soundry["batch4_s"], 2)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The report as a markdown table."""
    d, s = result["sides"]["direct"], result["sides"]["soundry"]
    steps = result["steps"]
    machine = result["machine"]
    rows = [
        "| measure | diffusers directly | Soundry (backend + finish) |",
        "| --- | --- | --- |",
        f"| load s | {d['load_s']} | {s['load_s']} |",
        f"| weights MB (float32) | {d['weights_mb']} | {s['weights_mb']} |",
        f"| RSS after load MB | {d['rss_after_load_mb']} | {s['rss_after_load_mb']} |",
        f"| peak RSS MB | {d['peak_rss_mb']} | {s['peak_rss_mb']} |",
        f"| s per {result['clip_s']:g} s clip, one at a time | {d['clip_s']} | {s['clip_s']} "
        f"(generate {s['clip_generate_s']}, finish {s['clip_finish_s']}) |",
        f"| s per denoising step (incl. VAE decode share) | {round(d['clip_s'] / steps, 2)} | "
        f"{round(s['clip_s'] / steps, 2)} |",
        f"| 4 clips, one at a time (4 x solo) s | - | {result['one_at_a_time_4_s']} |",
        f"| 4 clips, one batched call s | - | {s['batch4_s']} (generate {s['batch4_generate_s']}) |",
    ]
    return "\n".join(
        [
            "# Stable Audio Open 1.0 on CPU (real-size random weights)",
            "",
            f"CPU: {machine.get('cpu')}, {machine.get('cores')} usable cores, torch threads "
            f"{s['torch_threads']}. {steps} denoising steps (the model card uses 100), guidance "
            f"{result['guidance']:g}, one {result['clip_s']:g} s stereo 44.1 kHz clip; the pipeline "
            "denoises and decodes its whole 47.55 s window for any length. Each side in its own process. "
            f"Load averages (before, after): direct {d['load_average_before_after']}, soundry "
            f"{s['load_average_before_after']}.",
            "",
            *rows,
            "",
            f"Soundry's overhead over diffusers directly: {result['overhead_pct']} % per clip (goal: at most "
            f"5 %). Batch of 4 vs one at a time: {result['batch4_speedup']}x the throughput.",
            "",
        ]
    )


def paired_markdown(paired: dict[str, Any]) -> str:
    """The ``--paired`` result as a paragraph for ``results/stable_audio.md``."""
    return (
        f"\n## Overhead under equal load (`--paired`, {paired['steps']} steps)\n\n"
        f"One process, the backend's own pipeline object called directly, then the same job through the "
        f"backend and its finish: diffusers {paired['direct_s']} s, Soundry {paired['soundry_s']} s per "
        f"{paired['clip_s']:g} s clip: overhead {paired['overhead_pct']} % (load average "
        f"{paired['load_average']}).\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", choices=("direct", "soundry", "paired"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--paired",
        action="store_true",
        help="only the overhead, under equal load: diffusers' call and Soundry's, alternately in one "
        "process (writes results/stable_audio_paired.json)",
    )
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(child(args.child, args.models_dir, args.steps, args.threads)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.paired:
        write_checkpoint(args.models_dir)
        paired = {
            "machine": machine_info(),
            "steps": args.steps,
            "clip_s": CLIP_S,
            "load_average": load_average(),
        }
        paired.update(child("paired", args.models_dir, args.steps, args.threads))
        d, s = paired["direct_s"], paired["soundry_s"]
        paired["overhead_pct"] = round(100 * (sum(s) / sum(d) - 1), 1)
        path = args.out.with_name("stable_audio_paired.json")
        path.write_text(json.dumps(paired, indent=2))
        report = args.out.with_suffix(".md")
        if report.is_file():
            report.write_text(report.read_text() + paired_markdown(paired))
        print(json.dumps(paired))
        return
    result = run(args.models_dir, args.steps, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
