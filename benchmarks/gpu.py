"""GPU decoding benchmark: audiocraft's own call vs Soundry's static and CUDA-graph decoding, and the bound.

Run it with ``benchmarks/gpu.sh`` (under 10 minutes on one GPU; ``--dry-run`` runs the same code on
the tiny model on CPU in seconds, which CI does). For musicgen-small and musicgen-medium sized LMs
(real-size architecture, random weights: the same compute as the trained ones; built in memory
with audiocraft's own builders from ``benchmarks.realsize.audiocraft_config``), at batch 1 and 8:

* ``audiocraft``: ``MusicGen._generate_tokens``, audiocraft's own decoding loop under its own
  float16 autocast (what ``MusicGen.get_pretrained(...).generate`` does on CUDA);
* ``soundry-static``: the same loop through :class:`~workers.backends._audiocraft_fast.StaticDecoder`
  with float16 weights, eager steps;
* ``soundry-graph``: the same with each one-token step replayed from a CUDA graph (the worker's
  default on CUDA);
* ``bound``: the memory-bandwidth bound, bytes one step must read (float16 decoding weights plus
  the average key/value cache) over the copy bandwidth measured in the same run.

Speed is decoding steps per second (one step emits one token per codebook for every row) and
audio seconds per second (batch x 50 frames per second of audio). Warm-up runs (graph capture,
cuBLAS set-up) are excluded; each figure is the median of the timed runs.

Fidelity of each precision against float32 (musicgen-small size): teacher-forced next-token KL
divergence and top-1 agreement over >= 1,000 steps of float32-generated tokens (conditional
logits), and the SNR of the codec's audio decoded in that precision from the same tokens. Random
weights give flatter distributions than trained ones; the figures bound numeric drift, not quality.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import MUSIC_PROMPTS, decoding_steps, machine_info
from benchmarks.gpu_env import install_placeholders

logger = logging.getLogger("benchmarks.gpu")

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("audiocraft", "soundry-static", "soundry-graph", "soundry-compiled", "bound")
DEFAULT_VARIANTS = "audiocraft,soundry-static,soundry-graph,bound"
SEED = 20261
FIDELITY_STEPS = 1000


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_musicgen(scale: str, device: str) -> Any:
    """A real-size (``small``/``medium``) or ``tiny`` random-weight MusicGen built in memory on ``device``."""
    import torch
    from audiocraft.models import builders
    from audiocraft.models.musicgen import MusicGen
    from omegaconf import OmegaConf

    if scale == "tiny":
        from workers.tiny import audiocraft_config

        cfg_dict = audiocraft_config(
            sample_rate=32000, ratios=[8, 5, 4, 4], segment_duration=30.0, melody=False
        )
    else:
        from benchmarks.realsize import audiocraft_config as realsize_config

        cfg_dict = realsize_config("musicgen", scale)
    cfg = OmegaConf.create({**cfg_dict, "device": device})
    torch.manual_seed(SEED)
    compression = builders.get_compression_model(cfg).to(device).eval()
    lm = builders.get_lm_model(cfg).to(device).eval()
    return MusicGen(f"bench-{scale}", compression, lm, max_duration=30.0)


@contextlib.contextmanager
def _decoding(model: Any, variant: str) -> Iterator[None]:
    from workers.backends._audiocraft_fast import StaticDecoder

    if variant == "audiocraft":
        yield
        return
    graph = variant in ("soundry-graph", "soundry-compiled")
    # on CPU (dry run) the graph variant runs the graph's padded, masked step form without capture;
    # the compiled variant is the graph's step through torch.compile (then captured on CUDA)
    decoder = StaticDecoder(model.lm, cuda_graphs=graph, padded=graph, compiled=variant == "soundry-compiled")
    with decoder.installed():
        yield


def generate_tokens(model: Any, prompts: list[str], seeds: list[int]) -> Any:
    """``MusicGen._generate_tokens`` for ``prompts`` (row ``i`` sampled from ``seeds[i]``)."""
    import torch

    from workers.backends._audiocraft_sampling import per_row_sampling

    with torch.inference_mode(), per_row_sampling(seeds, model.device):
        attributes, prompt_tokens = model._prepare_tokens_and_attributes(prompts, None)
        return model._generate_tokens(attributes, prompt_tokens, False)


def configure(model: Any, rows: int, seconds: float) -> tuple[list[str], list[int]]:
    """Set the generation parameters every measurement uses; the prompts and seeds of ``rows`` rows."""
    model.set_generation_params(
        duration=seconds,
        use_sampling=True,
        top_k=min(250, int(model.lm.card)),
        cfg_coef=3.0,
        two_step_cfg=False,
    )
    prompts = [MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)] for i in range(rows)]
    return prompts, [SEED + i for i in range(rows)]


def time_variant(
    model: Any, variant: str, batch: int, seconds: float, repeats: int
) -> tuple[Any, dict[str, Any]]:
    """Tokens, steps/s and audio-s/s of ``variant``: ``batch`` rows of ``seconds``, median of ``repeats``."""
    device = str(model.device)
    prompts, seeds = configure(model, batch, seconds)
    steps = decoding_steps(seconds)
    times: list[float] = []
    with _decoding(model, variant):
        started = time.perf_counter()
        generate_tokens(model, prompts, seeds)  # warm-up: graph capture, compile, cuBLAS handles, allocator
        warm_up_s = time.perf_counter() - started
        for _ in range(repeats):
            _sync(device)
            started = time.perf_counter()
            tokens = generate_tokens(model, prompts, seeds)
            _sync(device)
            times.append(time.perf_counter() - started)
    took = statistics.median(times)
    return tokens, {
        "variant": variant,
        "batch": batch,
        "seconds": seconds,
        "steps": steps,
        "times_s": [round(t, 4) for t in times],
        "warm_up_s": round(warm_up_s, 2),
        "steps_per_s": round(steps / took, 2),
        "audio_s_per_s": round(batch * seconds / took, 3),
    }


def copy_bandwidth(device: str) -> float:
    """Bytes per second a device-to-device copy moves (read + write), from a 1 GiB copy."""
    import torch

    if not device.startswith("cuda"):
        return 0.0
    src = torch.empty(2**29, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    _sync(device)
    started = time.perf_counter()
    n = 20
    for _ in range(n):
        dst.copy_(src)
    _sync(device)
    return 2 * src.numel() * src.element_size() * n / (time.perf_counter() - started)


def bound(model: Any, batch: int, seconds: float, bandwidth: float) -> dict[str, Any]:
    """Memory-bandwidth bound of one float16 decoding step (weights + mean key/value cache read)."""
    from workers.backends._audiocraft_fast import lm_parts

    lm = model.lm
    weights = sum(p.numel() for part in lm_parts(lm) for p in part.parameters() if part is not lm.emb) * 2
    layers = len(lm.transformer.layers)
    dim = int(lm.transformer.layers[0].self_attn.embed_dim)
    steps = decoding_steps(seconds)
    rows = 2 * batch  # classifier-free guidance doubles the rows
    cache = layers * 2 * rows * dim * (steps / 2) * 2
    per_step = weights + cache
    steps_per_s = bandwidth / per_step if bandwidth else None  # no device memory bandwidth on CPU
    return {
        "variant": "bound",
        "batch": batch,
        "seconds": seconds,
        "bytes_per_step": int(per_step),
        "steps_per_s": round(steps_per_s, 2) if steps_per_s else None,
        "audio_s_per_s": round(batch * steps_per_s / model.frame_rate, 3) if steps_per_s else None,
    }


def fidelity(model: Any, modes: list[str], rows: int, seconds: float) -> list[dict[str, Any]]:
    """Teacher-forced KL / top-1 agreement and codec SNR of each precision in ``modes`` against float32."""
    import torch

    from workers.backends._audiocraft_fast import apply_precision, convert_lm, torch_dtype

    lm = model.lm
    device = str(model.device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    apply_precision(model, "float32", store_weights=False)  # the reference: no autocast
    prompts, seeds = configure(model, rows, seconds)
    codes = generate_tokens(model, prompts, seeds)
    with torch.inference_mode():
        attributes, _ = model._prepare_tokens_and_attributes(prompts, None)
        conditions = lm.condition_provider(lm.condition_provider.tokenize(attributes))
        reference = lm.compute_predictions(codes, [], conditions)
        ref_logp = torch.log_softmax(reference.logits.float(), dim=-1)
        mask = reference.mask
        ref_audio = model.compression_model.decode(codes, None).float()
    out: list[dict[str, Any]] = []
    for mode in modes:
        other = copy.deepcopy(lm)
        convert_lm(other, mode)  # the weights as the worker stores them at that precision
        autocast: Any = (
            contextlib.nullcontext()
            if mode == "int8"
            else torch.autocast(device_type, dtype=torch_dtype(mode))
        )
        with torch.inference_mode(), autocast:
            logp = torch.log_softmax(other.compute_predictions(codes, [], conditions).logits.float(), dim=-1)
            audio = model.compression_model.decode(codes, None).float() if mode != "int8" else ref_audio
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)[mask]
        agree = (ref_logp.argmax(-1) == logp.argmax(-1))[mask].float()
        noise = float(((ref_audio - audio) ** 2).sum())
        snr = 10 * math.log10(float((ref_audio**2).sum()) / noise) if noise > 0 else math.inf
        out.append(
            {
                "precision": mode,
                "steps": int(mask[:, 0].sum()),
                "kl_mean": round(float(kl.mean()), 6),
                "kl_p99": round(float(torch.quantile(kl.float(), 0.99)), 6),
                "top1_agreement": round(float(agree.mean()), 4),
                "codec_snr_db": round(snr, 1) if math.isfinite(snr) else None,
            }
        )
        del other
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | variant | batch | steps/s | audio-s/s | vs audiocraft |",
        "|---|---|---|---|---|---|",
    ]
    base = {(r["model"], r["batch"]): r["steps_per_s"] for r in rows if r["variant"] == "audiocraft"}
    order = {name: i for i, name in enumerate(VARIANTS)}
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"], order[r["variant"]])):
        ref = base.get((r["model"], r["batch"]))
        ratio = f"{r['steps_per_s'] / ref:.2f}x" if ref and r["steps_per_s"] else "n/a"
        cells = (r["model"], r["variant"], r["batch"], r["steps_per_s"], r["audio_s_per_s"], ratio)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| precision | steps | KL mean (nats) | KL p99 | top-1 agreement | codec SNR (dB) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['precision']} | {r['steps']} | {r['kl_mean']} | {r['kl_p99']} | {r['top1_agreement']} | "
        f"{r['codec_snr_db'] if r['codec_snr_db'] is not None else 'same (codec float32)'} |"
        for r in rows
    ]
    return "\n".join(lines)


def run(
    args: argparse.Namespace, say: Callable[[str], None], write: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Every measurement; ``write`` gets the report so far after each model (a time limit keeps it)."""
    placeholders = install_placeholders()
    import torch

    from workers.backends._audiocraft_fast import apply_precision

    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run to check the script on CPU")
    scales = ["tiny"] if dry else args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    seconds = 0.3 if dry else args.seconds
    repeats = 1 if dry else args.repeats
    precision = "float32" if dry else "float16"
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    report: dict[str, Any] = {
        "machine": machine_info(),
        "gpu": torch.cuda.get_device_name(0) if not dry else None,
        "torch": torch.__version__,
        "dry_run": dry,
        "placeholders": placeholders,
        "precision": precision,
        "speed": [],
        "fidelity": [],
    }
    if not dry:
        # float32 means float32 in the fidelity reference (TF32 off); the speed runs are float16
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    bandwidth = copy_bandwidth(device)
    report["copy_bandwidth_gb_s"] = round(bandwidth / 1e9, 1)
    say(f"device {report['gpu'] or 'cpu'}; copy bandwidth {report['copy_bandwidth_gb_s']} GB/s")
    started = time.perf_counter()
    for scale in scales:
        model = build_musicgen(scale, device)
        if scale in ("tiny", "small") and not args.skip_fidelity:
            modes = ["bfloat16", "int8"] if dry else ["float16", "bfloat16"]
            fid_s = 0.5 if dry else FIDELITY_STEPS / (4 * model.frame_rate)
            report["fidelity"] = fidelity(model, modes, rows=4, seconds=fid_s)
            say(fidelity_table(report["fidelity"]))
        name = f"musicgen-{scale}"
        if "audiocraft" in variants:
            apply_precision(model, precision, store_weights=False)  # audiocraft's own: autocast
            for batch in batches:
                _, row = time_variant(model, "audiocraft", batch, seconds, repeats)
                report["speed"].append({"model": name, **row})
                say(json.dumps(report["speed"][-1]))
        apply_precision(model, precision, store_weights=True)  # Soundry's: weights stored in float16
        for batch in batches:
            tokens: dict[str, Any] = {}
            for variant in ("soundry-static", "soundry-graph", "soundry-compiled"):
                if variant not in variants:
                    continue
                tokens[variant], row = time_variant(model, variant, batch, seconds, repeats)
                # same weights, seeds and precision: the graph's padded, masked attention rounds
                # differently from the eager slices, so a token on a sampling boundary can flip (and
                # the rest follow); the compiled step fuses kernels, which rounds differently again
                for other in ("soundry-static", "soundry-graph"):
                    if other != variant and other in tokens:
                        same = (tokens[variant] == tokens[other]).float().mean()
                        row[f"tokens_equal_to_{other.removeprefix('soundry-')}"] = round(float(same), 4)
                report["speed"].append({"model": name, **row})
                say(json.dumps(report["speed"][-1]))
            if "bound" in variants:
                report["speed"].append({"model": name, **bound(model, batch, seconds, bandwidth)})
        write(report)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """``gpu.json`` and ``gpu.md`` (``gpu-dry-run.*`` for a dry run) in ``out_dir``."""
    name = "gpu-dry-run" if report["dry_run"] else "gpu"
    report["table"] = _table(report["speed"])
    report["fidelity_table"] = fidelity_table(report["fidelity"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2))
    gpu = report["gpu"] or "CPU (dry run)"
    (out_dir / f"{name}.md").write_text(
        f"# Decoding speed on {gpu} ({report['precision']}, torch {report['torch']})\n\n"
        f"Copy bandwidth {report['copy_bandwidth_gb_s']} GB/s; CPU {report['machine']['cpu']}.\n\n"
        f"{report['table']}\n\n## Fidelity against float32\n\n{report['fidelity_table']}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU: checks the script, no GPU")
    parser.add_argument("--models", default="small,medium", help="comma-separated LM scales (small, medium)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length per row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the results (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = args.out or (Path(os.environ.get("TMPDIR", "/tmp")) if args.dry_run else RESULTS)
    report = run(args, lambda line: print(line, flush=True), lambda partial: write_report(partial, out_dir))
    write_report(report, out_dir)
    print(report["table"])
    print(f"wrote {out_dir} in {report['wall_s']} s")


if __name__ == "__main__":
    main()
