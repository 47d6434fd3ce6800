"""The voice service: consent phrases, creating a voice (checked by a worker), listing, deleting,
approving; routes stay thin over it (gen_server/routes/voices.py).

Creating a voice, in order: the request's uploads exist; the consent code is consumed (atomically, once;
refused as unknown, used or expired); the clips are copied under ``voices/<id>/`` in the artifact store
and the record is written as ``verifying``; ``soundry.voices.verify`` is queued on the speech queue
with the protected voices' keys, and the request waits for the worker's verdict on the voice's pub/sub
channel (pushed, not polled) up to ``SOUNDRY_VOICE_VERIFY_TIMEOUT_S``. Accepted: the voice is
``active`` (English: the phrase was recognised) or ``pending_approval`` (another language: an admin
approves it). Refused, failed or timed out: its clips and record are deleted. Every outcome is a line
of the audit log (:mod:`gen_server.voices.audit`), which deleting a voice never touches.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

from gen_server.contract.voice import (
    CloningPolicyView,
    ConsentPhraseView,
    VoiceCreate,
    VoiceState,
    VoiceView,
)
from gen_server.errors import Conflict, Forbidden, GenerationFailed, InvalidInput, NotFound, TransientError
from gen_server.jobs import Caller, JobService
from gen_server.records import keys
from gen_server.records.voices import VoiceRecord, VoiceRecords
from gen_server.storage import upload_key, voice_consent_key, voice_prefix, voice_reference_key
from gen_server.voices import audit, protected

logger = logging.getLogger(__name__)

PHRASE_LANGUAGES = ("en",)
"""Languages whose consent phrase the worker's offline recognizer checks (pocketsphinx: English)."""


class ConsentRefused(InvalidInput):
    """The worker's verification refused the voice; the message names the failed check and its figure."""

    code = "consent_refused"


class VerificationTimeout(TransientError):
    code = "verification_timeout"


def check_field(check: dict[str, Any]) -> str:
    """The request field a failed check is about: the references (``protected``; ``quality`` when only
    references fail it) or the consent clip (``phrase``, ``speaker``, its own ``quality``)."""
    name, detail = str(check.get("name", "")), str(check.get("detail", ""))
    if name == "protected" or (name == "quality" and "consent clip" not in detail):
        return "reference_uploads"
    return "consent_upload"


def visible(record: VoiceRecord, caller: Caller) -> bool:
    """Owner or admin (a keyless single-user server's caller is admin: everything is visible)."""
    return caller.admin or record.owner == (caller.owner or "local")


def usable_voice(records: VoiceRecords, voice_id: str, caller: Caller) -> VoiceRecord:
    """The voice a speech job names, when ``caller`` may use it now.

    Raises:
        NotFound: no such voice for ``caller`` (field ``voice_id``).
        Conflict: it is still being verified or awaits an admin's approval.
    """
    record = records.read(voice_id)
    if record is None or not visible(record, caller):
        raise NotFound(f"no voice '{voice_id}' (GET /v1/voices lists yours)", field="voice_id")
    if record.state != "active":
        raise Conflict(
            f"voice '{voice_id}' is {record.state.replace('_', ' ')}; it cannot be used yet", field="voice_id"
        )
    return record


class VoiceService:
    """The voice library on top of the job service (same Redis, queue, storage and settings)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.settings = jobs.settings
        self.store = jobs.store
        self.records = VoiceRecords(jobs.redis)

    @property
    def audit_path(self) -> Any:
        return audit.audit_path(self.settings.data_dir)

    def _allowed(self) -> None:
        if self.settings.cloning == "off":
            raise Forbidden("voice cloning is off on this server (SOUNDRY_CLONING=off)", field="voice")

    def policy(self) -> CloningPolicyView:
        return CloningPolicyView(
            cloning=self.settings.cloning,
            phrase_languages=list(PHRASE_LANGUAGES),
            consent_code_ttl_s=self.settings.consent_code_ttl_s,
            protected_voices=len(protected.names(self.settings.data_dir)),
        )

    # ------------------------------------------------------------------------------------ phrase

    def consent_phrase(self, caller: Caller) -> ConsentPhraseView:
        """A new phrase and its one-time code, valid ``SOUNDRY_CONSENT_CODE_TTL_S`` (15 minutes)."""
        self._allowed()
        from gen_server.voices.phrases import new_phrase

        phrase = new_phrase()
        ttl = self.settings.consent_code_ttl_s
        issued = self.records.issue_code(phrase.code, phrase.text, caller.owner or "local", ttl)
        return ConsentPhraseView(
            code=phrase.code, text=phrase.text, expires_at=issued.expires_at, expires_in_s=ttl
        )

    # ------------------------------------------------------------------------------------ create

    def create(self, req: VoiceCreate, caller: Caller) -> VoiceView:
        """Make a voice from ``req`` once a worker verified its consent (blocking: run in a thread).

        Raises:
            NotFound: an upload does not exist (field ``reference_uploads.N`` / ``consent_upload``).
            InvalidInput: the consent code is unknown, used or expired (field ``consent_code``).
            ConsentRefused: a check failed (422; the message names it and its figure).
            VerificationTimeout: no worker answered in time (503; try again with a new phrase).
        """
        self._allowed()
        owner = caller.owner or "local"
        for i, upload in enumerate(req.reference_uploads):
            if not self.store.exists(upload_key(upload)):
                raise NotFound(f"no upload '{upload}'", field=f"reference_uploads.{i}")
        if not self.store.exists(upload_key(req.consent_upload)):
            raise NotFound(f"no upload '{req.consent_upload}'", field="consent_upload")
        phrase = self._consume(req.consent_code, owner)

        voice_id = uuid.uuid4().hex
        consent = self.store.get(upload_key(req.consent_upload))
        consent_sha = hashlib.sha256(consent).hexdigest()
        references = [voice_reference_key(voice_id, i) for i in range(len(req.reference_uploads))]
        for key, upload in zip(references, req.reference_uploads, strict=True):
            self.store.put(key, self.store.get(upload_key(upload)))
        self.store.put(voice_consent_key(voice_id), consent)
        record = VoiceRecord(
            voice_id=voice_id,
            name=req.name,
            language=req.language,
            owner=owner,
            created_at=time.time(),
            state="verifying",
            references=len(references),
            consent_sha256=consent_sha,
            phrase=phrase,
            code=req.consent_code,
        )
        self.records.create(record)
        checked = req.language.split("-")[0] in PHRASE_LANGUAGES
        task = {
            "voice_id": voice_id,
            "references": references,
            "consent": voice_consent_key(voice_id),
            "phrase": phrase if checked else None,
            "language": req.language,
            "protected": protected.publish(self.settings.data_dir, self.store),
        }
        try:
            verdict = self._verified(voice_id, task)
        except VerificationTimeout as e:
            audit.append(
                self.audit_path,
                "refused",
                voice_id,
                caller.owner,
                consent_sha256=consent_sha,
                phrase=phrase,
                code=req.consent_code,
                verdict={"error": e.message},
            )
            raise
        figures = {
            "name": req.name,
            "language": req.language,
            "consent_sha256": consent_sha,
            "phrase": phrase,
            "code": req.consent_code,
            "verdict": verdict,
        }
        if verdict.get("error") or not verdict.get("accepted"):
            self._discard(voice_id, owner)
            audit.append(self.audit_path, "refused", voice_id, caller.owner, **figures)
            if verdict.get("error"):
                raise GenerationFailed(
                    f"consent verification failed: {verdict['error']}", field="consent_upload"
                )
            raise _refusal(verdict)
        state: VoiceState = "active" if checked else "pending_approval"
        self.records.set_state(voice_id, state)
        audit.append(self.audit_path, "created", voice_id, caller.owner, state=state, **figures)
        logger.info("voice %s (%s, %s) created for %s: %s", voice_id, req.name, req.language, owner, state)
        return self.get(voice_id, caller)

    def _consume(self, code: str, owner: str) -> str:
        """The phrase of ``owner``'s consent ``code``, consumed now; refused when unknown (or another
        key's), used or expired."""
        status, issued = self.records.consume_code(owner, code)
        if status == "used":
            raise InvalidInput("consent code already used: ask for a new phrase", field="consent_code")
        if issued is None or issued.owner != owner:
            raise InvalidInput(
                "unknown consent code: ask for a phrase with POST /v1/voices/consent-phrase",
                field="consent_code",
            )
        late = time.time() - issued.expires_at
        if late > 0:
            raise InvalidInput(
                f"consent code expired {late:.0f} s ago (codes last {self.settings.consent_code_ttl_s} s): "
                "ask for a new phrase",
                field="consent_code",
            )
        return issued.text

    def _verified(self, voice_id: str, task: dict[str, Any]) -> dict[str, Any]:
        """Queue the check and wait for its verdict on the voice's channel (subscribed before sending)."""
        timeout_s = self.settings.voice_verify_timeout_s
        pubsub = self.jobs.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(keys.voice_events(voice_id))
        try:
            self.jobs.queue.verify_voice(voice_id, task)
            deadline = time.monotonic() + timeout_s
            while True:
                record = self.records.read(voice_id)
                if record is not None and record.verdict is not None:
                    return record.verdict
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pubsub.get_message(timeout=min(left, 1.0))
        finally:
            pubsub.close()
        record = self.records.read(voice_id)
        self._discard(voice_id, record.owner if record is not None else "local")
        raise VerificationTimeout(
            f"no worker verified the consent within {timeout_s:g} s (is a speech worker running?); "
            "ask for a new phrase and try again",
            field="consent_upload",
        )

    def _discard(self, voice_id: str, owner: str) -> None:
        self.store.delete_prefix(voice_prefix(voice_id))
        self.records.delete(voice_id, owner)

    # ------------------------------------------------------------------------------ read, delete

    def _visible(self, voice_id: str, caller: Caller) -> VoiceRecord:
        record = self.records.read(voice_id)
        if record is None or not visible(record, caller):
            raise NotFound(f"no voice '{voice_id}'", field="voice_id")
        return record

    def get(self, voice_id: str, caller: Caller) -> VoiceView:
        return self._visible(voice_id, caller).view()

    def list(self, caller: Caller) -> list[VoiceView]:
        """Newest first: the caller's voices (an admin's: every voice)."""
        ids = self.records.ids(None if caller.admin else caller.owner or "local")
        found = (self.records.read(i) for i in ids)
        return [r.view() for r in found if r is not None and r.state != "verifying"]

    def delete(self, voice_id: str, caller: Caller) -> VoiceView:
        """Delete the voice's clips and cached conditioning (everything under ``voices/<id>/``) and its
        record; the audit log keeps its creation and gets the deletion."""
        record = self._visible(voice_id, caller)
        self._discard(voice_id, record.owner)
        audit.append(
            self.audit_path,
            "deleted",
            voice_id,
            caller.owner,
            owner=record.owner,
            consent_sha256=record.consent_sha256,
        )
        return record.view()

    def approve(self, voice_id: str, caller: Caller) -> VoiceView:
        """An admin approves a voice whose language the phrase check does not cover.

        Raises:
            Forbidden: the caller is not an admin.
            Conflict: the voice is not pending approval.
        """
        if not caller.admin:
            raise Forbidden("only an admin key approves voices", field="voice_id")
        record = self._visible(voice_id, caller)
        if record.state != "pending_approval":
            raise Conflict(f"voice '{voice_id}' is {record.state}, not pending approval", field="voice_id")
        now = time.time()
        self.records.set_state(voice_id, "active", approved_by=caller.owner or "local", approved_at=now)
        audit.append(
            self.audit_path,
            "approved",
            voice_id,
            caller.owner,
            owner=record.owner,
            consent_sha256=record.consent_sha256,
        )
        return self.get(voice_id, caller)


def _refusal(verdict: dict[str, Any]) -> ConsentRefused:
    failed = [c for c in verdict.get("checks", []) if not c.get("passed")]
    if not failed:
        return ConsentRefused("consent verification refused the voice", field="consent_upload")
    first = failed[0]
    figure = ""
    if first.get("score") is not None:
        figure = f" (score {first['score']:.3g}"
        figure += f", threshold {first['threshold']:.3g})" if first.get("threshold") is not None else ")"
    others = f"; also failed: {', '.join(repr(c['name']) for c in failed[1:])}" if len(failed) > 1 else ""
    message = f"consent check '{first['name']}' failed{figure}: {first.get('detail', '')}{others}"
    return ConsentRefused(message, field=check_field(first))
