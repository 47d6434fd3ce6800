"""One command: Soundry against the library baseline, side by side in one run.

    uv run --frozen python -m benchmarks.run            # real-size models (~10 min on 2 CPU cores)
    uv run --frozen python -m benchmarks.run --quick    # tiny models: checks the plumbing (~2 min)

Phases, in this order, never overlapping (each has the machine to itself):

1. checkpoints: real-size random-weight checkpoints in the libraries' own formats, written once
   into ``benchmarks/.cache/models/<catalog id>/`` (:mod:`benchmarks.realsize`).
2. baseline (its own process): audiocraft ``MusicGen.generate`` one prompt at a time, plus the
   library's own batched call for reference; Piper and coqui VITS directly (:mod:`benchmarks.baseline`).
3. Soundry: ``soundry serve`` with ``SOUNDRY_MODELS_DIR`` on those folders, so catalog ids such as
   ``musicgen-small`` load the real-size weights through the real loaders; N concurrent jobs,
   per-job overhead, worker memory with 1/2/3 models, speech real-time factor and time to first
   audio byte on ``POST /v1/audio/speech`` (:mod:`benchmarks.e2e`).
4. report: ``benchmarks/results/latest.md`` and ``latest.json`` (``--quick``: ``quick.*`` in the
   cache folder, never committed), the table printed with each target marked met or missed.
   Targets are reported, never asserted. ``python -m benchmarks.report <json>`` re-renders one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import SFX_PROMPT, SPEECH_TEXT, decoding_steps, load_average, machine_info
from benchmarks.report import evaluate_targets, render_markdown

logger = logging.getLogger("benchmarks.run")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache"
DEFAULT_OUT = ROOT / "benchmarks" / "results"


@dataclass
class Plan:
    """What one run measures (model ids are Soundry catalog ids)."""

    quick: bool
    device: str
    music_model: str
    sfx_model: str
    coqui_model: str
    coqui_voice: str | None
    tiny_music_model: str = "dev-musicgen-tiny"
    jobs: int = 8
    duration_s: float = 1.0
    warmup_s: float = 0.5
    baseline_prompts: int = 3
    baseline_batch: int = 8
    overhead_real_s: float = 2.0
    overhead_real_reps: int = 1
    overhead_tiny_s: float = 10.0
    overhead_tiny_reps: int = 3
    sfx_s: float = 0.5
    speech_reps: int = 3
    ttfb_reps: int = 5
    audiogen_scale: str = "small"
    gpu_compile: bool = False


def detect_device(requested: str) -> str:
    """``cpu`` or ``cuda:0``; ``auto`` asks torch in a subprocess (this process never imports torch)."""
    if requested != "auto":
        return requested
    if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
        return "cpu"
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "cuda:0" if probe.stdout.strip() == "True" else "cpu"


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' (uncommitted changes)' if dirty else ''}"


def _python(module: str, *args: str, log: Path) -> None:
    """``python -m module args`` with its output in ``log``; raises with the log tail on failure."""
    with log.open("ab") as out:
        code = subprocess.call(
            [sys.executable, "-m", module, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{module} exited {code}:\n{tail}")


class Phases:
    """Times each phase and keeps going when one fails (its error goes into the report)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.load: dict[str, float] = {}
        self.errors: dict[str, str] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        logger.info("== %s", name)
        started = time.perf_counter()
        try:
            return fn()
        except Exception as e:
            logger.exception("%s failed", name)
            self.errors[name] = f"{type(e).__name__}: {str(e)[-1500:]}"
            return None
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)
            self.load[name] = (load_average() or [0.0])[0]
            logger.info("== %s: %.1f s (load average %.2f)", name, self.seconds[name], self.load[name])


# --------------------------------------------------------------------------------------------------


def prepare_checkpoints(plan: Plan, models_dir: Path, logs: Path) -> dict[str, Any]:
    summary = logs / "checkpoints.json"
    if plan.quick:
        _python(
            "benchmarks.realsize",
            str(models_dir),
            "--tiny",
            "--json-out",
            str(summary),
            log=logs / "ckpt.log",
        )
    else:
        _python(
            "benchmarks.realsize",
            str(models_dir),
            "--audiogen-scale",
            plan.audiogen_scale,
            "--json-out",
            str(summary),
            log=logs / "ckpt.log",
        )
    return dict(json.loads(summary.read_text()))


def music_folder(plan: Plan, models_dir: Path) -> Path:
    return models_dir / "dev" / "musicgen" if plan.quick else models_dir / plan.music_model


def coqui_folder(plan: Plan, models_dir: Path) -> Path:
    return models_dir / "dev" / "vits" if plan.quick else models_dir / plan.coqui_model


def bundled_voice() -> tuple[str, Path | None]:
    from gen_server.contract.catalog import BUNDLED_VOICE_ID, build_catalog
    from gen_server.settings import Settings

    catalog = build_catalog(Settings())
    try:
        return BUNDLED_VOICE_ID, Path(catalog.get(BUNDLED_VOICE_ID).source)
    except Exception:
        return BUNDLED_VOICE_ID, None


def run_baseline(plan: Plan, models_dir: Path, logs: Path) -> dict[str, Any]:
    out = logs / "baseline.json"
    _, onnx = bundled_voice()
    args = [
        "--out",
        str(out),
        "--music",
        str(music_folder(plan, models_dir)),
        "--device",
        plan.device,
        "--duration",
        str(plan.duration_s),
        "--prompts",
        str(plan.baseline_prompts),
        "--batch",
        str(plan.baseline_batch),
        "--warmup",
        str(plan.warmup_s),
        "--vits-dir",
        str(coqui_folder(plan, models_dir)),
        "--speech-reps",
        str(plan.speech_reps),
    ]
    if onnx is not None:
        args += ["--piper", str(onnx)]
    if plan.coqui_voice:
        args += ["--vits-speaker", plan.coqui_voice]
    if plan.gpu_compile:
        args.append("--gpu-compile")
    _python("benchmarks.baseline", *args, log=logs / "baseline.log")
    return dict(json.loads(out.read_text()))


def run_soundry(plan: Plan, models_dir: Path, data_dir: Path, phases: Phases) -> dict[str, Any]:
    from benchmarks import e2e

    speech_model, _ = bundled_voice()
    out: dict[str, Any] = {}
    with e2e.soundry_server(data_dir, models_dir, plan.device) as server:
        out["startup_s"] = round(server.started_s, 2)
        url = server.url
        out["cold_first_job"] = phases.run(
            "soundry: first music job (loads the model)",
            lambda: e2e.run_job(url, e2e.music_body(plan.music_model, "warm-up", plan.warmup_s, 1), 0.05),
        )
        out["concurrent"] = phases.run(
            f"soundry: {plan.jobs} concurrent music jobs",
            lambda: e2e.concurrent_music(url, plan.music_model, plan.jobs, plan.duration_s),
        )
        out["overhead_real"] = phases.run(
            "soundry: overhead (model size of the run)",
            lambda: e2e.overhead(url, plan.music_model, plan.overhead_real_s, plan.overhead_real_reps),
        )
        memory = [e2e.memory(server, "1 model", [plan.music_model])]
        out["sfx_job"] = phases.run(
            "soundry: sfx job (second model)",
            lambda: e2e.run_job(
                url, e2e.music_body(plan.sfx_model, SFX_PROMPT, plan.sfx_s, 3, kind="sfx"), 0.05
            ),
        )
        memory.append(e2e.memory(server, "2 models", [plan.music_model, plan.sfx_model]))
        out["coqui_job"] = phases.run(
            "soundry: coqui speech job (third model)",
            lambda: e2e.speech_job(url, plan.coqui_model, SPEECH_TEXT, plan.coqui_voice),
        )
        memory.append(e2e.memory(server, "3 models", [plan.music_model, plan.sfx_model, plan.coqui_model]))
        out["memory"] = memory

        def tiny_overhead() -> dict[str, Any]:
            e2e.run_job(url, e2e.music_body(plan.tiny_music_model, "warm-up", plan.warmup_s, 1), 0.05)
            return e2e.overhead(url, plan.tiny_music_model, plan.overhead_tiny_s, plan.overhead_tiny_reps)

        out["overhead_tiny"] = phases.run("soundry: overhead, tiny model", tiny_overhead)
        out["piper_job"] = phases.run(
            "soundry: Piper speech job", lambda: e2e.speech_job(url, speech_model, SPEECH_TEXT)
        )
        out["ttfb"] = phases.run(
            "soundry: speech time to first byte", lambda: e2e.speech_ttfb(url, speech_model, plan.ttfb_reps)
        )
        out["memory_final"] = e2e.memory(
            server,
            "all",
            [plan.music_model, plan.sfx_model, plan.coqui_model, plan.tiny_music_model, speech_model],
        )
    return out


def derive(plan: Plan, baseline: dict[str, Any], soundry: dict[str, Any]) -> dict[str, Any]:
    """Ratios computed from the side-by-side figures (see the report's notes for definitions)."""
    d: dict[str, Any] = {}
    seq = (baseline.get("music") or {}).get("sequential") or {}
    conc = soundry.get("concurrent") or {}
    if seq.get("clips_per_min") and conc.get("clips_per_min"):
        d["throughput_ratio"] = round(conc["clips_per_min"] / seq["clips_per_min"], 3)
        if seq.get("times_s"):
            # against the fastest single baseline prompt: a bound that noise cannot inflate
            d["throughput_ratio_vs_fastest"] = round(conc["clips_per_min"] * min(seq["times_s"]) / 60.0, 3)
    real = soundry.get("overhead_real") or {}
    tiny = soundry.get("overhead_tiny") or {}
    target_s = plan.overhead_tiny_s
    if plan.music_model == plan.tiny_music_model and tiny:
        d["model_time_10s"] = tiny.get("generation_s")
        d["model_time_10s_method"] = "measured (tiny model, quick run)"
    elif real and abs(plan.overhead_real_s - target_s) < 1e-6:
        d["model_time_10s"] = real.get("generation_s")
        d["model_time_10s_method"] = f"measured ({plan.music_model})"
    elif real.get("generation_s"):
        scale = decoding_steps(target_s) / decoding_steps(plan.overhead_real_s)
        d["model_time_10s"] = round(float(real["generation_s"]) * scale, 2)
        d["model_time_10s_method"] = (
            f"projected: {plan.music_model} model time at {plan.overhead_real_s:g} s x "
            f"{decoding_steps(target_s)}/{decoding_steps(plan.overhead_real_s)} decoding steps"
        )
    if tiny.get("overhead_s") is not None and d.get("model_time_10s"):
        d["overhead_share_10s"] = round(float(tiny["overhead_s"]) / float(d["model_time_10s"]), 4)
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny models: checks the plumbing, no real figures"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for latest.md/latest.json (default benchmarks/results; --quick: the cache folder)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="checkpoints and run data")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--jobs", type=int, default=8, help="concurrent same-model music jobs")
    parser.add_argument("--duration", type=float, default=1.0, help="music clip seconds (throughput)")
    parser.add_argument("--baseline-prompts", type=int, default=3, help="baseline prompts, one at a time")
    parser.add_argument(
        "--overhead-real-s",
        type=float,
        default=2.0,
        help="real-size overhead clip seconds (10 = no projection)",
    )
    parser.add_argument("--audiogen-scale", choices=("small", "medium"), default="small")
    parser.add_argument("--gpu-compile", action="store_true", help="GPU: also time a torch.compile'd LM")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch/onnxruntime on both sides (OMP_NUM_THREADS); default: the libraries' own",
    )
    args = parser.parse_args(argv)
    if args.threads:
        # inherited by the baseline process and by `soundry serve` and its worker alike
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    load_start = load_average()
    device = detect_device(args.device)
    if args.quick:
        plan = Plan(
            quick=True,
            device=device,
            music_model="dev-musicgen-tiny",
            sfx_model="dev-audiogen-tiny",
            coqui_model="dev-vits-tiny",
            coqui_voice="alice",
            jobs=args.jobs,
            duration_s=args.duration,
            baseline_prompts=2,
            overhead_real_s=args.overhead_real_s,
            overhead_tiny_reps=2,
            speech_reps=2,
            ttfb_reps=3,
            gpu_compile=args.gpu_compile,
        )
    else:
        from benchmarks.realsize import AUDIOGEN_ID, MUSICGEN_ID, VITS_ID

        plan = Plan(
            quick=False,
            device=device,
            music_model=MUSICGEN_ID,
            sfx_model=AUDIOGEN_ID,
            coqui_model=VITS_ID,
            coqui_voice=None,
            jobs=args.jobs,
            duration_s=args.duration,
            baseline_prompts=args.baseline_prompts,
            baseline_batch=args.jobs,
            overhead_real_s=args.overhead_real_s,
            audiogen_scale=args.audiogen_scale,
            gpu_compile=args.gpu_compile,
        )
    cache = args.cache.resolve()
    models_dir = cache / "models"
    run_dir = cache / ("run-quick" if plan.quick else "run")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    phases = Phases()

    checkpoints = phases.run("checkpoints", lambda: prepare_checkpoints(plan, models_dir, logs)) or {}
    baseline = (
        phases.run("baseline (library, one at a time)", lambda: run_baseline(plan, models_dir, logs)) or {}
    )
    soundry = (
        phases.run("soundry end to end", lambda: run_soundry(plan, models_dir, run_dir / "data", phases))
        or {}
    )

    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "revision": git_revision(),
            "mode": "quick (tiny models)" if plan.quick else "real-size random weights",
            "machine": machine_info(),
            "device": device,
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "plan": asdict(plan),
            "total_s": round(time.perf_counter() - started, 1),
            "phases_s": phases.seconds,
            "phases_load_average": phases.load,
            "threads": args.threads,
            "errors": phases.errors,
            "command": " ".join(["uv run --frozen python -m benchmarks.run", *(argv or sys.argv[1:])]),
        },
        "checkpoints": checkpoints,
        "baseline": baseline,
        "soundry": soundry,
        "derived": derive(plan, baseline, soundry),
    }
    results["targets"] = evaluate_targets(results)
    markdown = render_markdown(results)
    out_dir: Path = args.out or (cache if plan.quick else DEFAULT_OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "quick" if plan.quick else "latest"
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"\nwritten: {out_dir / (stem + '.md')}, {out_dir / (stem + '.json')}; logs in {logs}")
    return 1 if phases.errors else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
