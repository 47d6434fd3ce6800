"""CPU decoding with the static decoder's step compiled by ``torch.compile`` (inductor), per precision.

``uv run --frozen python -m benchmarks.compiled`` (about 15 minutes on 2 cores; run nothing else
meanwhile). Real-size musicgen-small random weights, 1 s clips, batch 1 and 8, side by side in one
process: audiocraft's own float32 call, Soundry's static decoder as it runs by default on CPU, the
same decoder in the padded fixed-shape form that compilation needs (run eagerly), and compiled
(``SOUNDRY_COMPILED_DECODING=1``). ``warm_up_s`` is the first call: for the compiled rows, the
compilation. Writes ``benchmarks/results/compiled.json`` and ``compiled.md``; the CPU is named.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info
from benchmarks.gpu import RESULTS, build_musicgen, time_variant
from benchmarks.precision import table

logger = logging.getLogger("benchmarks.compiled")

VARIANTS = ("soundry-static", "soundry-graph", "soundry-compiled")
"""soundry-graph on CPU: the padded, masked step form compiled decoding uses, run eagerly."""


def run(
    scale: str, seconds: float, batches: list[int], repeats: int, precisions: list[str]
) -> dict[str, Any]:
    import torch
    from audiocraft.models.musicgen import MusicGen

    from workers.backends._audiocraft_fast import apply_precision

    base = build_musicgen(scale, "cpu")
    apply_precision(base, "float32", store_weights=False)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": f"musicgen-{scale}",
        "speed": rows,
    }
    for batch in batches:
        _, row = time_variant(base, "audiocraft", batch, seconds, repeats)
        rows.append({"precision": "float32", **row})
        logger.info("%s", rows[-1])
    for precision in precisions:
        model = MusicGen(
            base.name, base.compression_model, copy.deepcopy(base.lm), max_duration=base.max_duration
        )
        apply_precision(model, precision, store_weights=True)
        for variant in VARIANTS:
            for batch in batches:
                try:
                    _, row = time_variant(model, variant, batch, seconds, repeats)
                except Exception as e:  # a mode inductor cannot compile is a result too
                    row = {"variant": variant, "batch": batch, "error": f"{type(e).__name__}: {e}"[:300]}
                rows.append({"precision": precision, **row})
                logger.info("%s", rows[-1])
        del model
        torch._dynamo.reset()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="small", help="LM scale (small; tiny checks the script)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", default="float32,bfloat16,int8")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(
        args.scale,
        args.seconds,
        [int(b) for b in args.batches.split(",")],
        args.repeats,
        args.precisions.split(","),
    )
    report["table"] = table(report, first_call=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compiled.json").write_text(json.dumps(report, indent=2))
    (args.out / "compiled.md").write_text(
        f"# CPU decoding, compiled step: {report['model']}, {report['machine']['cpu']}, "
        f"{report['threads']} threads, torch {report['torch']}\n\n{report['table']}\n"
    )
    print(report["table"])


if __name__ == "__main__":
    main()
