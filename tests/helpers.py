"""Test helpers shared by the suites: a real server process, audio checks, an offline recognizer."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from gen_server.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
"""Credentials and region for the local S3 test server (moto accepts any)."""


def server_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDRY_")}
    env.update(
        {
            "SOUNDRY_DATA_DIR": str(data_dir),
            "SOUNDRY_PORT": str(port),
            "SOUNDRY_HOST": "127.0.0.1",
            "SOUNDRY_DEV_MODELS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # one math thread per test process: the suite runs two test processes, each with servers
            # and workers, on two cores; oversubscribed OpenMP threads spin-wait and multiply every
            # model call's time (tests/workers/conftest.py measured 28 s vs 5 s for one test)
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **extra,
        }
    )
    return env


@contextmanager
def running_server(data_dir: Path, *args: str, timeout_s: float = 300.0, **env: str) -> Iterator[str]:
    """``soundry serve`` as a real subprocess (embedded Redis + worker + API); yields its base URL."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gen_server.cli", "serve", *args],
        env=server_env(data_dir, port, **env),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc, timeout_s, data_dir / "serve.log")
        yield url
    finally:
        if proc.poll() is None:
            stop_group(proc, signal.SIGINT, timeout_s=30)
        log.close()


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float) -> None:
    """Send ``sig`` to ``proc``'s process group; SIGKILL it if it has not exited after ``timeout_s``."""
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def s3_server() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto's, in a thread) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a fresh name on the S3 server at ``endpoint`` and return its name."""
    import uuid

    name = f"soundry-{uuid.uuid4().hex[:12]}"
    _s3_client(endpoint).create_bucket(Bucket=name)
    return name


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key in ``bucket``, sorted."""
    pages = _s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not up after {timeout_s} s:\n{log.read_text()[-4000:]}")


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode WAV bytes to ``[frames, channels]`` float32 and the rate."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples, rate


def assert_sound(samples: np.ndarray, rate: int, *, expect_rate: int, expect_s: float | None) -> None:
    assert rate == expect_rate, f"rate {rate} != {expect_rate}"
    assert np.isfinite(samples).all(), "non-finite samples"
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 1e-3, f"silent output (rms {rms})"
    if expect_s is not None:
        got = samples.shape[0] / rate
        assert abs(got - expect_s) <= 0.05 * expect_s, f"duration {got:.3f} s, asked {expect_s} s"


def transcribe(samples: np.ndarray, rate: int) -> str:
    """Offline English transcription with pocketsphinx's bundled model (lower-case words)."""
    from workers.speech_check import transcribe as recognise

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return recognise(mono, rate)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def read_rpp(text: str) -> dict[str, Any]:
    """A Reaper project (``.rpp``) read as nested blocks, by its rules (a line opening with ``<`` starts a
    block, ``>`` ends it, fields split on spaces outside double quotes, single quotes or backticks).

    Returns:
        The ``REAPER_PROJECT`` block: ``{"head": tokens, "lines": [tokens, ...], "blocks": [...]}``.
    """
    token = re.compile(r'"[^"]*"|\'[^\']*\'|`[^`]*`|\S+')

    def split(line: str) -> list[str]:
        return [t[1:-1] if t[0] in "\"'`" and len(t) > 1 else t for t in token.findall(line)]

    root: dict[str, Any] = {"head": [], "lines": [], "blocks": []}
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("<"):
            block: dict[str, Any] = {"head": split(line[1:]), "lines": [], "blocks": []}
            stack[-1]["blocks"].append(block)
            stack.append(block)
        elif line == ">":
            stack.pop()
        elif line:
            stack[-1]["lines"].append(split(line))
    assert len(stack) == 1, "unbalanced blocks"
    (project,) = root["blocks"]
    return project


def rpp_field(block: dict[str, Any], name: str) -> list[str]:
    """The values of the first line ``NAME v1 v2 ...`` of an ``.rpp`` block."""
    return next(line[1:] for line in block["lines"] if line[0] == name)


def rpp_blocks(block: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The sub-blocks ``<NAME ...`` of an ``.rpp`` block."""
    return [b for b in block["blocks"] if b["head"][0] == name]
