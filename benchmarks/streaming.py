"""Streaming music: time to first audio, and what streaming costs the whole generation (issue #17).

Real-size random-weight ``musicgen-small`` (:mod:`benchmarks.realsize`: the same compute as the trained
model) through the worker's real path: ``MusicGenBackend`` loaded by its own loader, the job's
:class:`~workers.streaming.StreamPublisher` (stream post-processing, the watermark on the stream's
period grid, Redis ``XADD`` to an embedded Redis) as ``on_audio``. The model load and a 1 s warm-up are
excluded. Side by side in one process, interleaved:

* ``first_audio_s``: call start -> the first piece handed to the publisher (about 1 s of audio decoded
  and published), for each clip length; ``full_s``: the same call's whole generation;
* streaming on vs off: the same clip and seed with and without ``on_audio``; the clips are compared
  sample for sample (streaming must not change the audio).

Run: ``uv run --frozen python -m benchmarks.streaming`` (``--durations 10 30 --onoff 10 --reps 1``);
the JSON goes to ``benchmarks/results/streaming.json``. On a 2-core EPYC a 30 s clip decodes for
several minutes: the whole run takes ~12 minutes there.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, machine_info
from benchmarks.realsize import write_musicgen_small

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = HERE / ".cache" / "models"
DEFAULT_OUT = HERE / "results" / "streaming.json"
MODEL = "musicgen-small"
PROMPT = "warm lofi piano with soft drums"


class Timed:
    """``on_audio`` that publishes like the worker and notes when the first piece arrived."""

    def __init__(self, publish: Any | None) -> None:
        self.publish = publish
        self.start = time.perf_counter()
        self.first_s: float | None = None
        self.pieces = 0

    def __call__(self, audio: Any) -> None:
        if self.first_s is None:
            self.first_s = time.perf_counter() - self.start
        self.pieces += 1
        if self.publish is not None:
            self.publish(audio)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--onoff", type=float, default=10.0, help="clip length of the on/off comparison")
    parser.add_argument("--reps", type=int, default=1, help="on/off pairs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import redis

    from gen_server.audio.watermark import KeyedWatermarker
    from gen_server.contract.catalog import build_catalog
    from gen_server.contract.spec import JobRequest, build_spec
    from gen_server.redis_server import EmbeddedRedis
    from gen_server.settings import Settings
    from workers.backends.base import GenRequest
    from workers.backends.musicgen import MusicGenBackend
    from workers.streaming import StreamPublisher

    write_musicgen_small(args.models / MODEL)
    settings = Settings(models_dir=args.models)
    catalog = build_catalog(settings)
    entry = catalog.get(MODEL)
    key = b"benchmark-watermark-key"
    watermarker = KeyedWatermarker(key)

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis").start()
        client = redis.Redis.from_url(server.url)
        backend = MusicGenBackend(entry, settings)
        t = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - t
        backend.generate(GenRequest(PROMPT, seed=1, duration_s=1.0, top_k=250))  # warm-up

        def run(duration_s: float, stream: bool, seed: int = 7) -> tuple[dict[str, Any], np.ndarray]:
            spec = build_spec(
                JobRequest(kind="music", model=MODEL, prompt=PROMPT, duration_s=duration_s, seed=seed),
                catalog,
                job_id=uuid.uuid4().hex,
            )
            publisher = StreamPublisher(client, spec, watermarker, key, attempt=1) if stream else None
            sink = Timed(publisher.on_audio if publisher else None)
            request = GenRequest(
                PROMPT, seed=seed, duration_s=duration_s, top_k=250, on_audio=sink if stream else None
            )
            sink.start = time.perf_counter()
            clip = backend.generate(request)
            full_s = time.perf_counter() - sink.start
            row = {"duration_s": duration_s, "stream": stream, "full_s": round(full_s, 2)}
            if stream:
                row |= {"first_audio_s": round(sink.first_s or full_s, 2), "pieces": sink.pieces}
                row["first_over_full"] = round((sink.first_s or full_s) / full_s, 4)
            logger.info("%s", row)
            return row, clip.samples

        rows: list[dict[str, Any]] = []
        onoff: list[dict[str, Any]] = []
        same = True
        for rep in range(args.reps):
            # alternate which goes first: a warming or throttling machine favours neither
            order = (False, True) if rep % 2 == 0 else (True, False)
            pair: dict[bool, tuple[dict[str, Any], np.ndarray]] = {s: run(args.onoff, s) for s in order}
            same = same and bool(np.array_equal(pair[True][1], pair[False][1]))
            onoff.append({"off_s": pair[False][0]["full_s"], "on_s": pair[True][0]["full_s"]})
            rows.append(pair[True][0])
        for duration_s in args.durations:
            if duration_s != args.onoff:
                rows.append(run(duration_s, True)[0])
        client.close()
        server.stop()

    on = statistics.median(p["on_s"] for p in onoff)
    off = statistics.median(p["off_s"] for p in onoff)
    result = {
        "machine": machine_info(),
        "load_average_end": load_average(),
        "model": f"{MODEL} (real size, random weights)",
        "load_s": round(load_s, 2),
        "first_audio": rows,
        "onoff": {"duration_s": args.onoff, "pairs": onoff, "on_over_off": round(on / off, 4)},
        "streamed_clip_identical": same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
