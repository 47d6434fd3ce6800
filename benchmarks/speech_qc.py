"""Speech checks and word timings on real sentences: what the check costs, how often it makes a
sentence again, and how close the voice's own word timings are to an independent alignment (#18).

The bundled Piper voice speaks ``--sentences`` real English sentences (this repository's README and
prompt files, then the GPL-3, GPL-2 and Apache-2.0 texts in Debian's ``/usr/share/common-licenses``:
prose written by people, 5-30 words, no code), each once without the check and once through the
worker's checked path (:func:`workers.speech_check.checked` with the checker the worker uses), side by
side in one process. Reported: synthesis and check time per second of speech, the share of sentences
that needed a retry, the share that failed all tries, the recogniser's word error rate on the voice,
and the word starts from the voice's duration predictor against pocketsphinx's forced alignment of the
same audio (median and 90th percentile of the absolute difference).

Run: ``uv run --frozen python -m benchmarks.speech_qc`` (``--sentences 200``); the JSON goes to
``benchmarks/results/speech_qc.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import load_average, machine_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "speech_qc.json"


def sentences(limit: int) -> list[str]:
    """Prose sentences of the sources (no code, links or tables), in file order."""
    from workers.text import split_sentences

    sources = [
        ROOT / "README.md",
        ROOT / "prompts" / "README.md",
        *sorted((ROOT / "prompts").rglob("*.yaml")),
        *[
            p
            for p in (Path("/usr/share/common-licenses") / n for n in ("GPL-3", "GPL-2", "Apache-2.0"))
            if p.exists()
        ],
    ]
    found: list[str] = []
    for path in sources:
        for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            text = " ".join(line.strip(" -*>#|") for line in paragraph.splitlines())
            text = re.sub(r"^\s*(text|prompt|description)\s*:\s*", "", text)
            for sentence in split_sentences(text):
                words = sentence.split()
                plain = re.fullmatch(r"[A-Za-z0-9 ,.;:!?'()\"-]+", sentence)
                if 5 <= len(words) <= 30 and plain and sentence not in found:
                    found.append(sentence)
    return found[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from gen_server.contract.catalog import BUNDLED_VOICE_ID, build_catalog
    from gen_server.errors import GenerationFailed
    from gen_server.settings import Settings
    from workers.align import align
    from workers.backends.base import GenRequest
    from workers.backends.piper import PiperBackend
    from workers.speech_check import Verdict, check_sentence

    settings = Settings()
    backend = PiperBackend(build_catalog(settings).get(BUNDLED_VOICE_ID), settings)
    backend.load()
    texts = sentences(args.sentences)
    first_checks: list[Verdict] = []
    synth_s = check_s = speech_s = 0.0
    retried = failed = 0
    start_errors: list[float] = []
    aligned_sentences = 0
    for i, text in enumerate(texts):
        t = time.perf_counter()
        plain = backend.generate(GenRequest(text, seed=i))
        synth_s += time.perf_counter() - t
        speech_s += plain.duration_s
        reference = align(plain.samples[0], plain.sample_rate, [w.text for w in plain.words])
        if reference is not None:
            aligned_sentences += 1
            start_errors.extend(
                abs(w.start_s - a)
                for w, (a, _) in zip(plain.words, reference, strict=True)
                if w.source == "model"
            )
        calls: list[Verdict] = []

        def check(text: str, wave: Any, rate: int, speed: float, calls: list[Verdict] = calls) -> Verdict:
            verdict = check_sentence(text, wave, rate, speed, "en")
            calls.append(verdict)
            return verdict

        t = time.perf_counter()
        try:
            backend.generate(GenRequest(text, seed=i, check=check))
        except GenerationFailed:
            failed += 1
        check_s += time.perf_counter() - t
        first_checks.append(calls[0])
        retried += int(not calls[0].passed)
    check_s -= synth_s  # the checked run made the speech too (and again for retries: counted as cost)
    wers = sorted(v.wer for v in first_checks if v.wer is not None)
    result = {
        "machine": machine_info(),
        "load_average_end": load_average(),
        "voice": BUNDLED_VOICE_ID,
        "sentences": len(texts),
        "speech_s": round(speech_s, 1),
        "synthesis_ms_per_speech_s": round(1000 * synth_s / speech_s, 1),
        "check_ms_per_speech_s": round(1000 * check_s / speech_s, 1),
        "retried_share": round(retried / len(texts), 4),
        "failed_share": round(failed / len(texts), 4),
        "wer": {
            "compared": len(wers),
            "median": round(statistics.median(wers), 3) if wers else None,
            "p90": round(wers[int(0.9 * (len(wers) - 1))], 3) if wers else None,
            "max": round(wers[-1], 3) if wers else None,
        },
        "word_starts_vs_alignment": {
            "sentences": aligned_sentences,
            "words": len(start_errors),
            "median_ms": round(1000 * statistics.median(start_errors)) if start_errors else None,
            "p90_ms": round(1000 * sorted(start_errors)[int(0.9 * (len(start_errors) - 1))])
            if start_errors
            else None,
        },
        "first_try_problems": [
            {"text": t, "problems": list(v.problems)}
            for t, v in zip(texts, first_checks, strict=True)
            if v.problems
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "first_try_problems"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
