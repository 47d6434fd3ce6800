"""Examples for the OpenAPI document: what the API really answers, as plain data.

The models and routes attach these (``json_schema_extra``, ``Path(examples=...)``, ``responses``);
``tests/gen_server/test_openapi_examples.py`` checks every operation has them and that each one
validates against its schema, so they cannot drift from the models.
"""

from __future__ import annotations

from typing import Any

JOB_ID = "6f1c2a9e4b7d4e0f9a3b5c8d2e1f0a7b"
SCENE_ID = "0b9e6d1c3a5f4e2d8c7b6a5f4e3d2c1b"
BATCH_ID = "c7d2e9a14f6b4b3e9d8c1a0f5e4d3c2b"
UPLOAD_ID = "a41d9c2e7f3b4a5c8e6d0f1b2c3d4e5f"
CREATED_AT = 1795000000.0

SPEECH_SPEC: dict[str, Any] = {
    "version": 1,
    "job_id": JOB_ID,
    "kind": "speech",
    "model": "piper-en_US-joe-medium",
    "prompt": "Welcome to Soundry.",
    "duration_s": None,
    "seed": 1,
    "sampling": {"top_k": None, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0},
    "voice": None,
    "language": None,
    "speed": 1.0,
    "melody_upload": None,
    "continuation_upload": None,
    "reference_uploads": [],
    "post": {
        "trim_silence": True,
        "fade_in_s": 0.005,
        "fade_out_s": 0.02,
        "target_lufs": -16.0,
        "peak_normalize": False,
        "true_peak_dbtp": -1.0,
        "sample_rate": None,
        "channels": None,
    },
    "format": "wav",
    "wav_subtype": "pcm16",
    "bitrate_kbps": None,
    "callback_url": None,
    "webhook_events_filter": ["completed"],
    "owner": None,
}

JOB_RESULT: dict[str, Any] = {
    "job_id": JOB_ID,
    "artifact": f"jobs/{JOB_ID}/audio.wav",
    "manifest": f"jobs/{JOB_ID}/manifest.json",
    "format": "wav",
    "sample_rate": 22050,
    "channels": 1,
    "duration_s": 1.62,
    "seed": 1,
    "model": "piper-en_US-joe-medium",
    "sha256": "9b1f0c4e5d2a7b8c3e6f1a0d9c8b7a6e5f4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
    "watermark_payload": "5e1a9c07",
    "generation_s": 0.21,
    "batch_size": 1,
    "cached": False,
    "c2pa": True,
}

JOB_VIEW: dict[str, Any] = {
    "id": JOB_ID,
    "state": "succeeded",
    "kind": "speech",
    "model": "piper-en_US-joe-medium",
    "progress": 1.0,
    "queue_position": None,
    "eta_s": None,
    "created_at": CREATED_AT,
    "finished_at": CREATED_AT + 0.4,
    "worker": "soundry-worker@gpu-host-1",
    "attempts": 1,
    "spec": SPEECH_SPEC,
    "result": JOB_RESULT,
    "error": None,
    "webhook_attempts": [],
    "links": {"self": f"/v1/jobs/{JOB_ID}", "audio": f"/v1/jobs/{JOB_ID}/audio"},
}

QUEUED_JOB_VIEW: dict[str, Any] = {
    **JOB_VIEW,
    "state": "queued",
    "progress": 0.0,
    "queue_position": 1,
    "eta_s": 2.4,
    "finished_at": None,
    "worker": None,
    "attempts": 0,
    "result": None,
    "links": {"self": f"/v1/jobs/{JOB_ID}"},
}

MODEL_ENTRY: dict[str, Any] = {
    "id": "musicgen-small",
    "family": "musicgen",
    "kind": "music",
    "source": "facebook/musicgen-small",
    "description": "MusicGen 300M, text to music, mono 32 kHz",
    "sample_rate": 32000,
    "channels": 1,
    "max_duration_s": 300.0,
    "min_duration_s": 0.5,
    "window_s": 30.0,
    "codebook_size": 2048,
    "licence": "CC-BY-NC-4.0",
    "commercial_use": "not_allowed",
    "melody": False,
    "continuation": True,
    "voice_cloning": False,
    "languages": [],
    "speakers": [],
    "dev": False,
}

MODEL_LIST: dict[str, Any] = {
    "object": "list",
    "data": [{"object": "model", "owned_by": "musicgen", **MODEL_ENTRY}],
}

ELEVENLABS_VOICE: dict[str, Any] = {
    "voice_id": "piper-en_US-joe-medium",
    "name": "piper-en_US-joe-medium",
    "category": "premade",
    "description": "Piper voice en_US-joe-medium (offline, CPU-fast)",
    "labels": {
        "model": "piper-en_US-joe-medium",
        "licence": "voice CC0 (model card); engine piper-tts GPL-3.0-or-later",
        "language": "en",
        "default": "true",
    },
    "preview_url": None,
    "available_for_tiers": [],
    "high_quality_base_model_ids": ["piper-en_US-joe-medium"],
    "library": None,
}

ELEVENLABS_VOICES: dict[str, Any] = {"voices": [ELEVENLABS_VOICE]}

ELEVENLABS_VOICES_PAGE: dict[str, Any] = {
    "voices": [ELEVENLABS_VOICE],
    "has_more": True,
    "total_count": 3,
    "next_page_token": "1",
}

UPLOAD_VIEW: dict[str, Any] = {"id": UPLOAD_ID, "duration_s": 6.0, "sample_rate": 44100, "channels": 2}

DETECTION_VIEW: dict[str, Any] = {
    "detected": True,
    "confidence": 21.7,
    "payload": "5e1a9c07",
    "method": "decoded",
    "job_id": JOB_ID,
    "metadata_job_id": JOB_ID,
    "spans": [{"start_s": 0.0, "end_s": 12.48, "payload": "5e1a9c07", "job_id": JOB_ID, "confidence": 31.2}],
    "c2pa": {
        "supported": True,
        "present": True,
        "valid": True,
        "state": "Trusted",
        "trusted": True,
        "signer": "Soundry signer 1f3a9c2e",
        "issuer": "Soundry",
        "altered": False,
        "errors": [],
        "actions": ["c2pa.opened", "c2pa.transcoded"],
        "ingredients": [f"{JOB_ID}.wav"],
        "generation": {
            "generator": "Soundry 0.1.0",
            "kind": "speech",
            "model": "piper-en_US-joe-medium",
            "licence": "voice CC0 (model card); engine piper-tts GPL-3.0-or-later",
            "commercial_use": "allowed",
            "job_id": JOB_ID,
            "seed": 1,
            "watermark_payload": "5e1a9c07",
        },
        "summary": "C2PA: valid, signed by Soundry signer 1f3a9c2e (issuer Soundry), trusted, audio "
        "unchanged since signing; made by Soundry 0.1.0 with piper-en_US-joe-medium, licence voice CC0 "
        f"(model card); engine piper-tts GPL-3.0-or-later, job {JOB_ID}; transcoded from {JOB_ID}.wav",
    },
}

BATCH_ITEM: dict[str, Any] = {
    "item_id": "3c5d7e9f1a2b",
    "line": 6,
    "index": 0,
    "name": "door-creak",
    "variation": 0,
    "seed": 11,
    "file": "door-creak.wav",
    "job_id": JOB_ID,
    "state": "succeeded",
    "error": None,
}

BATCH_VIEW: dict[str, Any] = {
    "id": BATCH_ID,
    "name": "game-sfx-pack",
    "source": "game_sfx_pack.yaml",
    "created_at": CREATED_AT,
    "state": "running",
    "total": 12,
    "counts": {"succeeded": 1, "running": 1, "queued": 10},
    "items": [BATCH_ITEM],
    "links": {"self": f"/v1/batches/{BATCH_ID}", "archive": f"/v1/batches/{BATCH_ID}/archive"},
}

BATCH_SUMMARY: dict[str, Any] = {
    "id": BATCH_ID,
    "name": "game-sfx-pack",
    "source": "game_sfx_pack.yaml",
    "created_at": CREATED_AT,
    "total": 12,
    "links": {"self": f"/v1/batches/{BATCH_ID}"},
}

SCENE_VIEW: dict[str, Any] = {
    "id": SCENE_ID,
    "name": "podcast intro",
    "state": "running",
    "progress": 0.45,
    "created_at": CREATED_AT,
    "finished_at": None,
    "target_lufs": -16.0,
    "true_peak_dbtp": -1.0,
    "sample_rate": 48000,
    "channels": 2,
    "planned_s": 11.0,
    "components": [
        {
            "path": "tracks[0].items[0]",
            "label": "welcome",
            "kind": "speech",
            "model": "piper-en_US-joe-medium",
            "job_id": JOB_ID,
            "start_s": 1.8,
            "duration_s": 4.9,
            "gain_db": 0.0,
            "state": "succeeded",
            "progress": 1.0,
            "error": None,
            "links": {"job": f"/v1/jobs/{JOB_ID}", "audio": f"/v1/jobs/{JOB_ID}/audio"},
        }
    ],
    "result": None,
    "mix": None,
    "error": None,
    "links": {"self": f"/v1/scenes/{SCENE_ID}", "job": f"/v1/jobs/{SCENE_ID}"},
}

HEALTH: dict[str, Any] = {"status": "ok", "redis": True}

METRICS = """# HELP soundry_queue_depth Jobs waiting per queue
# TYPE soundry_queue_depth gauge
soundry_queue_depth{queue="music"} 3.0
soundry_queue_depth{queue="speech"} 0.0
"""

EVENTS = (
    f'event: progress\ndata: {{"id": "{JOB_ID}", "state": "running", "progress": 0.5, ...}}\n\n'
    f'event: end\ndata: {{"id": "{JOB_ID}", "state": "succeeded", "progress": 1.0, ...}}\n\n'
)

SPEECH_SSE = (
    'data: {"type": "speech.audio.delta", "audio": "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjYxLjcuMTAw..."}\n\n'
    'data: {"type": "speech.audio.done", '
    '"usage": {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}}\n\n'
)
OPENAI_VOICES: dict[str, Any] = {
    "voices": [
        {"id": "alloy", "name": "alloy", "model": "piper-en_US-joe-medium", "speaker": None},
        {"id": "nova", "name": "nova", "model": "vits-vctk", "speaker": "p225"},
    ]
}


def binary(*media_types: str) -> dict[str, Any]:
    """``content`` of a response whose body is a file (audio, zip) in any of ``media_types``."""
    return {m: {"schema": {"type": "string", "format": "binary"}} for m in media_types}


def json_example(example: Any) -> dict[str, Any]:
    """``content`` of a JSON response documented by one example."""
    return {"application/json": {"example": example}}


CAPTIONS_SRT = "1\n00:00:00,058 --> 00:00:01,823\nHello world, this is Soundry.\n\n"
CAPTIONS_VTT = "WEBVTT\n\n00:00:00.058 --> 00:00:01.823\nHello world, this is Soundry.\n"
WORDS = [
    {"text": "Hello", "start_s": 0.058, "end_s": 0.313, "source": "model"},
    {"text": "world,", "start_s": 0.348, "end_s": 0.755, "source": "model"},
]
CAPTIONS_JSON: dict[str, Any] = {
    "cues": [{"start_s": 0.058, "end_s": 1.058, "text": "Hello world,", "words": WORDS}],
    "words": WORDS,
}
AUDIO_WITH_TIMESTAMPS: dict[str, Any] = {
    "audio_base64": "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjYxLjcuMTAwAAAAAAAAAAAAAAD/",
    "alignment": {
        "characters": list("Hi."),
        "character_start_times_seconds": [0.06, 0.21, 0.36],
        "character_end_times_seconds": [0.21, 0.36, 0.36],
    },
    "normalized_alignment": {
        "characters": list("Hi."),
        "character_start_times_seconds": [0.06, 0.21, 0.36],
        "character_end_times_seconds": [0.21, 0.36, 0.36],
    },
}
CAPTIONED_SPEECH: dict[str, Any] = {
    "job_id": JOB_ID,
    "audio": "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjYxLjcuMTAwAAAAAAAAAAAAAAD/",
    "response_format": "mp3",
    "captions": CAPTIONS_SRT,
    "caption_format": "srt",
    "words": WORDS,
}
