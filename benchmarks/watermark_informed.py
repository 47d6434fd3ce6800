"""Cost of informed watermark detection against the number of payloads an installation issued.

A detection that decodes returns before the informed step; one that does not (a weak mark, or no mark:
every unmarked upload) tests every issued payload at the 16 best pilot alignments. Measured here on
unmarked 3 s and 30 s excerpts of real recordings (Asterisk's music on hold, Debian; the worst case:
nothing decodes), for 0 (blind only), 10,000, 100,000 and 1,000,000 issued payloads: CPU and wall
time per detection, side by side in one run, and the threshold each size sets.

    uv run --frozen python -m benchmarks.watermark_informed

writes ``benchmarks/results/watermark_informed.{json,md}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import load_average, machine_info
from gen_server.audio.types import Audio
from gen_server.audio.watermark import IssuedPayloads, KeyedWatermarker
from tests.gen_server import watermark_audio

RESULTS = Path(__file__).parent / "results"
SIZES = (0, 10_000, 100_000, 1_000_000)
LENGTHS_S = (3.0, 30.0)
REPEATS = 10


def main() -> None:
    watermark_audio.require_all()
    marker = KeyedWatermarker(b"benchmark-key")
    rng = np.random.default_rng(1)
    clips = {s: [Audio.mono(*watermark_audio.real_music(rng, s)) for _ in range(REPEATS)] for s in LENGTHS_S}
    rows = []
    for size in SIZES:
        issued = IssuedPayloads(rng.integers(0, 2**32, size, dtype=np.uint32)) if size else None
        if issued is not None:
            len(issued)  # listed before timing (the server keeps its listing between detections)
        for seconds, audio_clips in clips.items():
            cpu, wall, found = 0.0, 0.0, 0
            for audio in audio_clips:
                c, w = time.process_time(), time.perf_counter()
                found += marker.detect(audio, issued).detected
                cpu += time.process_time() - c
                wall += time.perf_counter() - w
            rows.append(
                {
                    "issued": size,
                    "excerpt_s": seconds,
                    "cpu_ms": round(1000 * cpu / len(audio_clips), 1),
                    "wall_ms": round(1000 * wall / len(audio_clips), 1),
                    "threshold_z": round(issued.threshold(marker.informed_tests), 2) if issued else None,
                    "false_detections": found,
                }
            )
            print(rows[-1], flush=True)
    machine = machine_info()
    result = {"machine": machine, "load_average": load_average(), "repeats": REPEATS, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "watermark_informed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Informed watermark detection: cost per detection against issued payloads",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, load average "
        f"{result['load_average']}; unmarked real music (nothing decodes: the informed step always runs), "
        f"{REPEATS} excerpts per cell, `python -m benchmarks.watermark_informed`.",
        "",
        "| issued payloads | excerpt | CPU ms | wall ms | threshold z | false detections |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        z = "-" if r["threshold_z"] is None else f"{r['threshold_z']:.2f}"
        lines.append(
            f"| {r['issued']:,} | {r['excerpt_s']:g} s | {r['cpu_ms']} | {r['wall_ms']} | {z} | "
            f"{r['false_detections']} / {REPEATS} |"
        )
    (RESULTS / "watermark_informed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
