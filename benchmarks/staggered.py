"""Staggered arrivals: step-level batching vs window batching through the worker's batcher (issue #21).

Real-size random-weight ``musicgen-small`` (:mod:`benchmarks.realsize`) loaded by ``MusicGenBackend``,
served by the worker's :class:`~workers.batcher.Batcher` (``max_batch`` 8, the default 100 ms
window), with jobs submitted from their own threads like Celery's task threads: ``--jobs`` jobs of
``--seconds`` of music, one every ``--every`` seconds. Both schemes run side by side in one process
on the same loaded model (``step_batching`` on, then off; ``--order`` swaps them), after a warm-up;
per job the latency (submit -> clip), per scheme the p50/p95 latency, the makespan (first submit ->
last clip) and the throughput (audio seconds per wall second).

Run: ``uv run --frozen python -m benchmarks.staggered`` (~6 minutes on a 2-core EPYC; nothing
else running). Writes ``benchmarks/results/staggered.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MUSIC_PROMPTS, load_average, machine_info, percentile
from benchmarks.realsize import write_musicgen_small

logger = logging.getLogger("benchmarks.staggered")

HERE = Path(__file__).resolve().parent
MODEL = "musicgen-small"


def run_scheme(
    backend: Any, settings: Any, entry: Any, *, jobs: int, seconds: float, every: float
) -> dict[str, Any]:
    from workers.backends.base import GenRequest
    from workers.backends.registry import ModelManager
    from workers.batcher import Batcher

    calls: list[int] = []
    models = ModelManager(settings, factory=lambda _entry, _settings: backend)
    batcher = Batcher(
        models,
        max_batch=8,
        window_s=settings.batch_window_ms / 1000,
        on_model_call=lambda _m, n: calls.append(n),
    ).start()
    latencies: list[float | None] = [None] * jobs
    batch_sizes: list[int] = [0] * jobs
    ends: list[float] = [0.0] * jobs

    def one(i: int) -> None:
        request = GenRequest(
            MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)], seed=100 + i, duration_s=seconds, top_k=250
        )
        submitted = time.perf_counter()
        generated = batcher.run(entry, request, job_id=f"job-{i}")
        ends[i] = time.perf_counter()
        latencies[i] = ends[i] - submitted
        batch_sizes[i] = generated.batch_size

    started = time.perf_counter()
    threads = []
    try:
        for i in range(jobs):
            thread = threading.Thread(target=one, args=(i,))
            thread.start()
            threads.append(thread)
            time.sleep(every)
        for thread in threads:
            thread.join()
    finally:
        batcher.stop()
    done = [x for x in latencies if x is not None]
    makespan = max(ends) - started
    return {
        "step_batching": bool(settings.step_batching),
        "latencies_s": [round(x, 2) for x in done],
        "p50_s": percentile(done, 50),
        "p95_s": percentile(done, 95),
        "makespan_s": round(makespan, 2),
        "audio_s_per_s": round(jobs * seconds / makespan, 4),
        "batch_sizes": batch_sizes,
        "model_calls": calls,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=HERE / ".cache" / "models")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--order", choices=("step-first", "window-first"), default="step-first")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "staggered.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from gen_server.contract.catalog import build_catalog
    from gen_server.settings import Settings
    from workers.backends.base import GenRequest
    from workers.backends.musicgen import MusicGenBackend

    write_musicgen_small(args.models / MODEL)
    settings = Settings(models_dir=args.models, precision=args.precision)
    entry = build_catalog(settings).get(MODEL)
    backend = MusicGenBackend(entry, settings)
    backend.load()
    backend.generate(GenRequest("warm-up", seed=1, duration_s=0.5, top_k=250))
    schemes = [True, False] if args.order == "step-first" else [False, True]
    results = []
    for step in schemes:
        scheme_settings = settings.model_copy(update={"step_batching": step})
        backend.settings = scheme_settings
        result = run_scheme(
            backend, scheme_settings, entry, jobs=args.jobs, seconds=args.seconds, every=args.every
        )
        logger.info("%s", result)
        results.append(result)
    step_row = next(r for r in results if r["step_batching"])
    window_row = next(r for r in results if not r["step_batching"])
    report = {
        "machine": machine_info(),
        "load_average_after": load_average(),
        "model": MODEL,
        "precision": backend.precision,
        "jobs": args.jobs,
        "seconds": args.seconds,
        "every_s": args.every,
        "order": args.order,
        "schemes": results,
        "p95_ratio_step_over_window": round(step_row["p95_s"] / window_row["p95_s"], 3),
        "throughput_ratio_step_over_window": round(
            step_row["audio_s_per_s"] / window_row["audio_s_per_s"], 3
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "schemes"}, indent=2))


if __name__ == "__main__":
    main()
