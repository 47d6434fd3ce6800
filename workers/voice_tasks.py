"""``soundry.voices.verify``: checks a new voice's consent on a worker (the API never imports torch).

The API (:class:`gen_server.voices.service.VoiceService`) stores the clips under ``voices/<id>/``,
records the voice as ``verifying`` and queues this task (task id = voice id) on the speech queue with
the clips' storage keys, the phrase (``None`` for languages the recognizer does not know) and the
protected voices' keys. The task loads them, runs :func:`workers.consent.verify_consent` and writes
the verdict into the voice's record, which wakes the waiting request (:meth:`VoiceRecords.record_verdict`).
The API decides and audits; a verdict for a voice no longer being verified (timed out, deleted) is
dropped. Idempotent: a redelivered message checks again and records nothing new once decided.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from gen_server.audio import Audio
from gen_server.audio.encode import decode
from gen_server.celery_config import TASK_VERIFY_VOICE
from gen_server.errors import SoundryError
from gen_server.records.voices import VoiceRecords
from gen_server.storage import ArtifactStore
from workers.celery_app import app
from workers.runtime import runtime

logger = logging.getLogger(__name__)

_embeddings: dict[str, npt.NDArray[np.float32]] = {}
_lock = threading.Lock()


def protected_embeddings(store: ArtifactStore, keys: list[str]) -> list[npt.NDArray[np.float32]]:
    """Speaker embeddings of the protected voices' clips, each computed once per content."""
    from workers.consent import speaker_embedding

    out = []
    for key in keys:
        data = store.get(key)
        digest = hashlib.sha256(data).hexdigest()
        with _lock:
            found = _embeddings.get(digest)
        if found is None:
            found = np.asarray(speaker_embedding(decode(data)), dtype=np.float32)
            with _lock:
                _embeddings[digest] = found
        out.append(found)
    return out


def check(
    store: ArtifactStore,
    *,
    references: list[str],
    consent: str,
    phrase: str | None,
    language: str,
    protected: list[str],
) -> dict[str, Any]:
    """The verdict on a voice's stored clips: ``{"accepted", "checks": [{name, passed, detail, score,
    threshold}]}``."""
    from workers.consent import verify_consent

    refs: list[Audio] = [decode(store.get(key)) for key in references]
    verdict = verify_consent(
        decode(store.get(consent)),
        refs,
        phrase=phrase,
        language=language,
        protected=protected_embeddings(store, protected),
    )
    found: dict[str, Any] = verdict.to_dict()
    return found


@app.task(name=TASK_VERIFY_VOICE, ignore_result=True)
def verify_voice(
    voice_id: str,
    references: list[str],
    consent: str,
    phrase: str | None,
    language: str,
    protected: list[str],
) -> None:
    """Check voice ``voice_id``'s consent and record the verdict (or the error) on its record."""
    rt = runtime()
    try:
        verdict = check(
            rt.store,
            references=references,
            consent=consent,
            phrase=phrase,
            language=language,
            protected=protected,
        )
    except SoundryError as e:
        verdict = {"accepted": False, "checks": [], "error": e.message}
    except Exception as e:  # the waiting request gets the failure rather than a timeout
        logger.exception("voice %s: consent verification crashed", voice_id)
        verdict = {"accepted": False, "checks": [], "error": f"{type(e).__name__}: {e}"}
    recorded = VoiceRecords(rt.redis).record_verdict(voice_id, verdict)
    logger.info(
        "voice %s: consent %s%s",
        voice_id,
        "accepted" if verdict["accepted"] else "refused",
        "" if recorded else " (no longer being verified: dropped)",
    )
