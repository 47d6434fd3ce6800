"""/v1/voices: the voice library (consent-checked cloned voices), owned by the API key that made it.

``GET /v1/voices`` itself is the ElevenLabs-compatible list (gen_server/routes/elevenlabs.py): it
shows the caller's library voices first (``category`` ``cloned``, each with its ``library`` record),
then the models' own voices; ``?category=cloned`` lists the library alone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from gen_server.contract.voice import CloningPolicyView, ConsentPhraseView, VoiceCreate, VoiceView
from gen_server.deps import caller, jobs_of
from gen_server.jobs import Caller
from gen_server.voices.service import VoiceService


async def voice_service(request: Request) -> VoiceService:
    return VoiceService(jobs_of(request))


router = APIRouter(prefix="/v1/voices", tags=["voices"])

Service = Annotated[VoiceService, Depends(voice_service)]
Who = Annotated[Caller, Depends(caller)]
VoiceId = Annotated[
    str, Path(max_length=64, description="The voice's id", examples=["3f0c9d2e8a7b4c1d9e6f5a4b3c2d1e0f"])
]


@router.post(
    "/consent-phrase",
    status_code=201,
    response_model=ConsentPhraseView,
    summary="A phrase to read aloud for a new voice's consent clip, with its one-time code",
)
def consent_phrase(service: Service, who: Who) -> ConsentPhraseView:
    """The code is valid 15 minutes (``SOUNDRY_CONSENT_CODE_TTL_S``); one ``POST /v1/voices`` consumes it."""
    return service.consent_phrase(who)


@router.post(
    "",
    status_code=201,
    response_model=VoiceView,
    summary="Create a voice from 1-3 reference clips and a consent clip (checked on a worker)",
    responses={422: {"description": "A field is invalid, or a consent check failed (code consent_refused)"}},
)
def create_voice(req: VoiceCreate, service: Service, who: Who) -> VoiceView:
    """Upload the clips with ``POST /v1/uploads`` first. A worker checks that the consent clip contains
    the phrase (English; other languages wait for an admin's approval), is spoken by the references'
    speaker, is clean enough to judge, and that the references match no protected voice. Waits for the
    verdict: 201 with the voice, or 422 naming the failed check and its figure."""
    return service.create(req, who)


@router.get("/policy", response_model=CloningPolicyView, summary="This server's cloning policy")
def cloning_policy(service: Service) -> CloningPolicyView:
    """``SOUNDRY_CLONING``: verified (default), open (single-user local installs) or off."""
    return service.policy()


@router.get("/{voice_id}", response_model=VoiceView, summary="A voice of the library")
def get_voice(voice_id: VoiceId, service: Service, who: Who) -> VoiceView:
    return service.get(voice_id, who)


@router.delete(
    "/{voice_id}", response_model=VoiceView, summary="Delete a voice (its clips and cached conditioning)"
)
def delete_voice(voice_id: VoiceId, service: Service, who: Who) -> VoiceView:
    """The audit log keeps the voice's creation and records the deletion."""
    return service.delete(voice_id, who)


@router.post("/{voice_id}/approve", response_model=VoiceView, summary="Approve a pending voice (admin key)")
def approve_voice(voice_id: VoiceId, service: Service, who: Who) -> VoiceView:
    """For voices in languages the offline phrase check does not cover; recorded in the audit log."""
    return service.approve(voice_id, who)
