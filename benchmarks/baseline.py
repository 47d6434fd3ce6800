"""The library baseline: what a user would do without Soundry, one request at a time.

Runs in its own process (``python -m benchmarks.baseline``, started by :mod:`benchmarks.run`) so
the orchestrator never imports torch and the server phase starts with this memory given back.

* Music: ``MusicGen.get_pretrained(folder)`` + ``set_generation_params`` + ``generate([prompt])``,
  prompts one after another (the baseline); then, for reference, the same library's batched call
  with N prompts (the ceiling any server-side batching can reach).
* Speech: Piper's ``PiperVoice.synthesize`` (the bundled voice) and coqui-tts ``TTS.tts`` (VITS).
* GPU (only when CUDA is present): audiocraft's half-precision LM on the GPU, decoding steps per
  second against the memory-bandwidth bound, optionally with ``torch.compile`` on the transformer.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import MUSIC_PROMPTS, SPEECH_TEXT, median
from benchmarks.procmem import status_kb

logger = logging.getLogger("benchmarks.baseline")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _param_bytes(module: Any) -> int:
    return int(sum(p.numel() * p.element_size() for p in module.parameters()))


class _Music:
    """A loaded MusicGen with the settings Soundry also uses (sampling, top_k 250 or the card, CFG 3)."""

    def __init__(self, folder: Path, device: str) -> None:
        from audiocraft.models import MusicGen

        started = time.perf_counter()
        self.model = MusicGen.get_pretrained(str(folder), device=device)
        self.load_s = time.perf_counter() - started
        self.device = device
        self.card = int(self.model.lm.card)
        self.last_total = 0
        self.model.set_custom_progress_callback(self._progress)

    def _progress(self, generated: int, total: int) -> None:
        self.last_total = total

    def generate(self, prompts: list[str], duration_s: float, seed: int) -> tuple[float, int]:
        """Seconds for one library ``generate`` call, and its decoding steps."""
        import torch

        self.model.set_generation_params(
            use_sampling=True,
            top_k=min(250, self.card),
            top_p=0.0,
            temperature=1.0,
            duration=duration_s,
            cfg_coef=3.0,
        )
        torch.manual_seed(seed)
        _sync(self.device)
        started = time.perf_counter()
        self.model.generate(prompts, progress=True)
        _sync(self.device)
        return time.perf_counter() - started, self.last_total


def bench_music(
    folder: Path, device: str, duration_s: float, prompts: int, batch: int, warmup_s: float
) -> dict[str, Any]:
    import torch

    music = _Music(folder, device)
    model = music.model
    out: dict[str, Any] = {
        "folder": str(folder),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "load_s": round(music.load_s, 3),
        "lm_params": _params(model.lm),
        "codec_params": _params(model.compression_model),
        "lm_dtype": str(next(model.lm.parameters()).dtype),
        "duration_s": duration_s,
    }
    warm_s, _ = music.generate([MUSIC_PROMPTS[0]], warmup_s, seed=0)
    out["warmup_s"] = round(warm_s, 3)
    times: list[float] = []
    steps = 0
    for i in range(prompts):
        seconds, steps = music.generate([MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)]], duration_s, seed=i + 1)
        times.append(seconds)
        logger.info("baseline prompt %d: %.2f s (%d steps)", i + 1, seconds, steps)
    per_prompt = float(sum(times) / len(times))
    out["sequential"] = {
        "times_s": [round(t, 3) for t in times],
        "mean_s": round(per_prompt, 3),
        "steps": steps,
        "steps_per_s": round(steps / per_prompt, 3),
        "clips_per_min": round(60.0 / per_prompt, 3),
    }
    if batch > 1:
        prompts_b = [MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)] for i in range(batch)]
        seconds, steps = music.generate(prompts_b, duration_s, seed=100)
        logger.info("baseline batched x%d: %.2f s", batch, seconds)
        out["batched"] = {
            "batch": batch,
            "seconds": round(seconds, 3),
            "clips_per_min": round(60.0 * batch / seconds, 3),
            "speedup_vs_sequential": round(per_prompt * batch / seconds, 3),
        }
    mem = status_kb()
    out["process_peak_mb"] = round(mem.get("VmHWM", 0) / 1024, 1)
    out["process_rss_mb"] = round(mem.get("VmRSS", 0) / 1024, 1)
    del music, model
    gc.collect()
    return out


def bench_piper(onnx: Path, text: str, reps: int) -> dict[str, Any]:
    from piper import PiperVoice

    started = time.perf_counter()
    voice = PiperVoice.load(onnx)
    load_s = time.perf_counter() - started
    list(voice.synthesize("Hello there."))  # warm-up
    rtf: list[float] = []
    first: list[float] = []
    audio_s = 0.0
    for _ in range(reps):
        started = time.perf_counter()
        first_s: float | None = None
        frames = 0
        rate = 22050
        for chunk in voice.synthesize(text):
            if first_s is None:
                first_s = time.perf_counter() - started
            frames += len(chunk.audio_float_array)
            rate = int(chunk.sample_rate)
        total = time.perf_counter() - started
        audio_s = frames / rate
        rtf.append(total / audio_s)
        first.append(first_s or total)
    return {
        "voice": onnx.name,
        "load_s": round(load_s, 3),
        "audio_s": round(audio_s, 3),
        "rtf": median(rtf),
        "first_sentence_s": median(first),
    }


def bench_vits(
    model_path: Path, config_path: Path, speaker: str | None, text: str, reps: int
) -> dict[str, Any]:
    from TTS.api import TTS

    started = time.perf_counter()
    tts = TTS(model_path=str(model_path), config_path=str(config_path), progress_bar=False)
    load_s = time.perf_counter() - started
    model = tts.synthesizer.tts_model
    rate = int(tts.synthesizer.output_sample_rate)
    tts.tts("Hello there.", speaker=speaker)  # warm-up
    rtf: list[float] = []
    audio_s = 0.0
    for _ in range(reps):
        started = time.perf_counter()
        wav = tts.tts(text, speaker=speaker)
        total = time.perf_counter() - started
        audio_s = len(wav) / rate
        rtf.append(total / audio_s)
    return {
        "params": _params(model),
        "load_s": round(load_s, 3),
        "audio_s": round(audio_s, 3),
        "rtf": median(rtf),
    }


def gpu_bandwidth_gbs(gib: float = 1.0, reps: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read plus bytes written per second)."""
    import torch

    n = int(gib * 1024**3) // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 4 * reps / seconds / 1e9


def bench_gpu(folder: Path, duration_s: float, batch: int, compile_lm: bool) -> dict[str, Any]:
    """Steps/s of audiocraft's fp16 LM on CUDA against the bandwidth bound (weights read once per step)."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    device = "cuda"
    bandwidth = gpu_bandwidth_gbs()
    music = _Music(folder, device)
    lm_bytes = _param_bytes(music.model.lm)
    bound = bandwidth * 1e9 / lm_bytes
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "lm_dtype": str(next(music.model.lm.parameters()).dtype),
        "lm_param_bytes": lm_bytes,
        "bandwidth_gbs": round(bandwidth, 1),
        "bound_steps_per_s": round(bound, 1),
        "duration_s": duration_s,
    }

    def run(label: str) -> None:
        music.generate([MUSIC_PROMPTS[0]], 0.5, seed=0)  # warm-up (and compilation)
        for b in sorted({1, batch}):
            prompts = [MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)] for i in range(b)]
            seconds, steps = music.generate(prompts, duration_s, seed=1)
            rate = steps / seconds
            out[f"{label}_batch{b}"] = {
                "seconds": round(seconds, 3),
                "steps_per_s": round(rate, 2),
                "fraction_of_bound": round(rate / bound, 4),
            }

    run("eager")
    out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 1024**2, 1)
    if compile_lm:
        try:
            music.model.lm.transformer = torch.compile(music.model.lm.transformer, dynamic=True)
            run("compiled")
        except Exception as e:  # report, never fail the run: compilation support varies by version
            out["compiled_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    return out


def _timed(label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        out = fn()
    except Exception as e:
        logger.exception("%s failed", label)
        out = {"error": f"{type(e).__name__}: {e}"}
    out["phase_s"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Library baseline (one request at a time)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--music", type=Path, required=True, help="audiocraft checkpoint folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--piper", type=Path)
    parser.add_argument("--vits-dir", type=Path)
    parser.add_argument("--vits-speaker")
    parser.add_argument("--speech-reps", type=int, default=3)
    parser.add_argument("--gpu-duration", type=float, default=5.0)
    parser.add_argument("--gpu-compile", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    result: dict[str, Any] = {}
    result["music"] = _timed(
        "music",
        lambda: bench_music(args.music, args.device, args.duration, args.prompts, args.batch, args.warmup),
    )
    if args.piper is not None:
        result["piper"] = _timed("piper", lambda: bench_piper(args.piper, SPEECH_TEXT, args.speech_reps))
    if args.vits_dir is not None:
        vits = args.vits_dir
        result["vits"] = _timed(
            "vits",
            lambda: bench_vits(
                vits / "model.pth", vits / "config.json", args.vits_speaker, SPEECH_TEXT, args.speech_reps
            ),
        )
    result["gpu"] = _timed(
        "gpu", lambda: bench_gpu(args.music, args.gpu_duration, args.batch, args.gpu_compile)
    )
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
