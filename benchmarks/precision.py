"""CPU decoding speed and fidelity per precision: audiocraft's own float32 call vs Soundry's static decoder.

``uv run --frozen python -m benchmarks.precision`` (about 10 minutes on 2 cores; run nothing else
meanwhile). Real-size musicgen-small random weights built in memory (the same compute as the
trained model), 1 s clips, batch 1 and 8, side by side in one process; each figure the median of
the timed runs after a warm-up. Rows: audiocraft's ``_generate_tokens`` in float32 (the library's
CPU default), then Soundry's static decoder in float32, bfloat16 (weights stored in bfloat16) and
int8 (dynamic quantization of the LM's Linear layers). Fidelity against float32 as in
``benchmarks/gpu.py``: teacher-forced KL and top-1 agreement over 1,000 steps, codec SNR.
Writes ``benchmarks/results/precision.json`` and ``precision.md``; the CPU is named in both, since
the best mode depends on it (bfloat16 needs AVX-512-BF16/AMX to pay).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info
from benchmarks.gpu import FIDELITY_STEPS, RESULTS, build_musicgen, fidelity, time_variant

logger = logging.getLogger("benchmarks.precision")

PRECISIONS = ("float32", "bfloat16", "int8")


def run(scale: str, seconds: float, batches: list[int], repeats: int, fidelity_steps: int) -> dict[str, Any]:
    import torch

    from workers.backends._audiocraft_fast import apply_precision

    base = build_musicgen(scale, "cpu")
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": f"musicgen-{scale}",
        "speed": rows,
    }
    apply_precision(base, "float32", store_weights=False)
    report["fidelity"] = fidelity(
        base, ["bfloat16", "int8"], rows=4, seconds=fidelity_steps / (4 * base.frame_rate)
    )
    for batch in batches:
        _, row = time_variant(base, "audiocraft", batch, seconds, repeats)
        rows.append({"precision": "float32", **row})
        logger.info("%s", rows[-1])
    for precision in PRECISIONS:
        from audiocraft.models.musicgen import MusicGen

        model = MusicGen(
            base.name, base.compression_model, copy.deepcopy(base.lm), max_duration=base.max_duration
        )
        apply_precision(model, precision, store_weights=True)
        for batch in batches:
            _, row = time_variant(model, "soundry-static", batch, seconds, repeats)
            rows.append({"precision": precision, **row})
            logger.info("%s", rows[-1])
        del model
    return report


def table(report: dict[str, Any], *, first_call: bool = False) -> str:
    """Markdown rows of ``report["speed"]`` against audiocraft's float32 row of the same batch size;
    ``first_call`` adds the warm-up call's seconds (compilation, for compiled rows)."""
    extra = " first call (s) |" if first_call else ""
    lines = [
        f"| decoder | precision | batch | steps/s | audio-s/s | vs audiocraft float32 |{extra}",
        "|---|---|---|---|---|---|" + ("---|" if first_call else ""),
    ]
    base = {r["batch"]: r["steps_per_s"] for r in report["speed"] if r["variant"] == "audiocraft"}
    for r in report["speed"]:
        cells = [r["variant"], r["precision"], r["batch"]]
        if "error" in r:
            cells += [f"failed: {r['error']}", "", ""]
        else:
            cells += [r["steps_per_s"], r["audio_s_per_s"], f"{r['steps_per_s'] / base[r['batch']]:.2f}x"]
        if first_call:
            cells.append(r.get("warm_up_s", ""))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="small", help="LM scale (small; tiny checks the script)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fidelity-steps", type=int, default=FIDELITY_STEPS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(
        args.scale, args.seconds, [int(b) for b in args.batches.split(",")], args.repeats, args.fidelity_steps
    )
    from benchmarks.gpu import fidelity_table

    report["table"] = table(report)
    report["fidelity_table"] = fidelity_table(report["fidelity"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(report, indent=2))
    (args.out / "precision.md").write_text(
        f"# CPU decoding per precision: {report['model']}, {report['machine']['cpu']}, "
        f"{report['threads']} threads\n\n{report['table']}\n\n## Fidelity against float32\n\n"
        f"{report['fidelity_table']}\n"
    )
    print(report["table"])
    print(report["fidelity_table"])


if __name__ == "__main__":
    main()
