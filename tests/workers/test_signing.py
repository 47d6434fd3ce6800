"""The worker's finish signs what it stores: WAV/MP3/FLAC carry C2PA Content Credentials naming the
model and its licence, the result's sha256 is of the signed bytes, and ogg is stored unsigned."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.watermark import KeyedWatermarker
from gen_server.content_credentials import Signing, load_identity, new_identity_pem, verify
from gen_server.contract.catalog import Catalog, ModelEntry
from gen_server.contract.spec import JobRequest, build_spec
from gen_server.storage import LocalStore
from workers.pipeline import finish

KEY = b"s" * 32


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_finish_signs_the_stored_file(fmt: str, dev_entries: dict[str, ModelEntry], tmp_path: Path) -> None:
    entry = dev_entries["dev-vits-tiny"]
    spec = build_spec(
        JobRequest.model_validate(
            {"kind": "speech", "model": entry.id, "text": "Hello.", "voice": "bob", "seed": 3, "format": fmt}
        ),
        Catalog(list(dev_entries.values())),
        job_id=f"sign-{fmt}",
    )
    pem = new_identity_pem().encode()
    identity = load_identity(pem, pem, cert_source="test", key_source="test")
    rate = 22050
    t = np.arange(rate, dtype=np.float32) / rate
    audio = Audio((0.3 * np.sin(2 * np.pi * 220.0 * t))[None, :].astype(np.float32), rate)
    store = LocalStore(tmp_path)
    result = finish(
        spec,
        audio,
        watermarker=KeyedWatermarker(KEY),
        watermark_key=KEY,
        store=store,
        generation_s=0.1,
        signing=Signing(identity, entry.licence, entry.commercial_use),
    )
    stored = store.get(result.artifact)
    assert result.sha256 == hashlib.sha256(stored).hexdigest()
    verdict = verify(stored, fmt, identity)
    if fmt == "ogg":
        assert result.c2pa is False and not verdict.supported and not result.warnings
        return
    assert result.c2pa is True and verdict.valid and verdict.trusted and verdict.altered is False
    assert verdict.generation == {
        "generator": "Soundry 0.1.0",
        "kind": "speech",
        "model": entry.id,
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "job_id": spec.job_id,
        "seed": 3,
        "watermark_payload": result.watermark_payload,
        "cloned_voice": False,
    }
