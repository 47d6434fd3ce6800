"""Kokoro-82M vs the bundled Piper voice: real-time factor and resident memory, one run, one machine.

Kokoro is the real-size random-weight checkpoint of :func:`benchmarks.realsize.write_kokoro` (the
released configuration, 81.8M parameters, the duration head pinned to a natural speaking rate, so the
compute per second of audio is the trained model's); Piper is the bundled ``en_US-joe-medium`` voice
(real weights). Each model runs in its own fresh process through Soundry's backend (text segmentation,
G2P, synthesis: what a job costs), one after the other in the same invocation:

* load (seconds; the process's resident memory before and after, weights bytes by the backend's own
  estimate);
* one warm-up sentence, then ``--repeats`` takes of :data:`benchmarks.common.SPEECH_TEXT` (four
  sentences, ~15 s of speech); the median synthesis time over the audio length is the real-time
  factor (RTF; below 1 is faster than real time);
* the peak resident memory of the process (``VmHWM``) after loading and after synthesis. "RSS added by
  load" includes the libraries the load imports (Kokoro: kokoro, misaki, spaCy, transformers; torch is
  imported before the baseline).

Threads: torch's intra-op threads are ``--threads`` (default: torch's own, one per core); Piper's
onnxruntime session keeps its default pool (one thread per core). The load average is recorded before
and after each model: compare the two models within one run, not across runs.

Run: ``uv run --frozen python -m benchmarks.kokoro`` (writes ``benchmarks/results/kokoro.{json,md}``;
the first run writes the ~330 MB checkpoint into ``benchmarks/.cache/models/kokoro-82m``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SPEECH_TEXT, machine_info, run_child
from benchmarks.procmem import status_kb

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = HERE / ".cache" / "models"
DEFAULT_OUT = HERE / "results" / "kokoro.json"
WARMUP = "This sentence warms the model up."


def _rss_mb() -> dict[str, float]:
    kb = status_kb()
    return {"rss_mb": round(kb.get("VmRSS", 0) / 1024, 1), "peak_mb": round(kb.get("VmHWM", 0) / 1024, 1)}


def child(model: str, models_dir: Path, repeats: int, threads: int | None) -> dict[str, Any]:
    """Load ``model`` (``kokoro`` or ``piper``) in this process, time it, report its memory."""
    import torch

    from gen_server.contract.catalog import BUNDLED_VOICE_ID, KOKORO_ID, build_catalog
    from gen_server.settings import Settings
    from workers.backends.base import GenRequest
    from workers.backends.registry import create_backend

    if threads:
        torch.set_num_threads(threads)
    settings = Settings(data_dir=models_dir.parent / "data", models_dir=models_dir, allow_downloads=False)
    entry = build_catalog(settings).get(KOKORO_ID if model == "kokoro" else BUNDLED_VOICE_ID)
    backend: Any = create_backend(entry, settings)
    before = _rss_mb()
    started = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - started
    after_load = _rss_mb()
    backend.generate(GenRequest(WARMUP, seed=1))
    takes: list[tuple[float, float]] = []
    for i in range(repeats):
        started = time.perf_counter()
        audio = backend.generate(GenRequest(SPEECH_TEXT, seed=i + 1))
        takes.append((time.perf_counter() - started, audio.duration_s))
    synth = statistics.median(t for t, _ in takes)
    audio_s = statistics.median(a for _, a in takes)
    return {
        "model": entry.id,
        "weights": "random (real size)" if model == "kokoro" else "real (bundled voice)",
        "sample_rate": entry.sample_rate,
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "rss_before_load_mb": before["rss_mb"],
        "rss_after_load_mb": after_load["rss_mb"],
        "load_added_mb": round(after_load["rss_mb"] - before["rss_mb"], 1),
        "peak_rss_after_load_mb": after_load["peak_mb"],
        "weights_mb": round(backend.memory_bytes() / 1024**2, 1),
        "peak_rss_mb": _rss_mb()["peak_mb"],
        "audio_s": round(audio_s, 2),
        "synthesis_s": round(synth, 3),
        "rtf": round(synth / audio_s, 4),
        "times_real_time": round(audio_s / synth, 2),
        "takes": [[round(t, 3), round(a, 2)] for t, a in takes],
    }


def run(models_dir: Path, repeats: int, threads: int | None) -> dict[str, Any]:
    """Write the checkpoint if needed, then measure each model in a child process."""
    from benchmarks.realsize import KOKORO_ID, write_kokoro

    started = time.perf_counter()
    written = write_kokoro(models_dir / KOKORO_ID)
    out: dict[str, Any] = {
        "machine": machine_info(),
        "text": SPEECH_TEXT,
        "repeats": repeats,
        "checkpoint_written_s": round(time.perf_counter() - started, 1) if written else 0.0,
        "models": {},
    }
    for model in ("piper", "kokoro"):
        extra = ["--repeats", str(repeats)] + (["--threads", str(threads)] if threads else [])
        result = run_child("benchmarks.kokoro", model, models_dir, *extra)
        out["models"][model] = result
    piper, kokoro = out["models"]["piper"], out["models"]["kokoro"]
    out["kokoro_rtf_over_piper"] = round(kokoro["rtf"] / piper["rtf"], 2)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The report as a markdown table."""
    rows = [
        "| model | weights | load s | RSS added by load MB | weights MB | peak RSS after load MB | "
        "peak RSS MB | audio s | synthesis s | RTF | x real time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in result["models"].values():
        cells = ("model", "weights", "load_s", "load_added_mb", "weights_mb", "peak_rss_after_load_mb")
        cells += ("peak_rss_mb", "audio_s")
        cells += ("synthesis_s", "rtf", "times_real_time")
        rows.append("| " + " | ".join(str(m[c]) for c in cells) + " |")
    machine = result["machine"]
    loads = {k: m["load_average_before_after"] for k, m in result["models"].items()}
    return "\n".join(
        [
            "# Kokoro-82M vs the bundled Piper voice",
            "",
            f"CPU: {machine.get('cpu')}, {machine.get('cores')} usable cores. "
            f"Median of {result['repeats']} takes of a four-sentence paragraph; each model in its own "
            f"process through Soundry's backend. Load averages (before, after): {loads}.",
            "",
            *rows,
            "",
            f"Kokoro's real-time factor is {result['kokoro_rtf_over_piper']}x Piper's on this CPU.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (both sides' torch)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", choices=("kokoro", "piper"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(child(args.child, args.models_dir, args.repeats, args.threads)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args.models_dir, args.repeats, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
