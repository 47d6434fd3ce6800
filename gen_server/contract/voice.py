"""The voice library's contract: what a client sends to ``POST /v1/voices`` and what it gets back.

A voice is 1-3 reference clips of one speaker plus a consent clip of that speaker reading a one-time
phrase (``POST /v1/voices/consent-phrase``); a worker checks the consent before the voice exists
(:mod:`gen_server.voices.service`). Speech jobs on cloning models name it by ``voice_id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

VoiceState = Literal["verifying", "active", "pending_approval"]
"""verifying: a worker is checking the consent; active: usable; pending_approval: verified as far as
the offline checks go (speaker, quality) but in a language the phrase recognizer does not know, so an
admin approves it (``POST /v1/voices/{id}/approve``) before it can be used."""

CloningPolicy = Literal["verified", "open", "off"]
UploadId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="An id from POST /v1/uploads")]


class VoiceCreate(BaseModel):
    """``POST /v1/voices``: clips go up first with ``POST /v1/uploads``; their ids are named here."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Narrator",
                    "language": "en",
                    "reference_uploads": ["9f2c4b1d0e3a4c5b8d7e6f5a4b3c2d1e"],
                    "consent_upload": "0a1b2c3d4e5f40718293a4b5c6d7e8f9",
                    "consent_code": "k7p2m9x4",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100, description="A name for the voice")
    language: str = Field(
        "en",
        min_length=2,
        max_length=10,
        pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$",
        description="Its language",
    )
    reference_uploads: list[UploadId] = Field(
        min_length=1, max_length=3, description="Upload ids of 1-3 clips of the speaker (what is cloned)"
    )
    consent_upload: UploadId = Field(description="Upload id of the speaker reading the consent phrase aloud")
    consent_code: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The one-time code of that phrase (POST /v1/voices/consent-phrase)",
    )

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a voice needs a name")
        return value


VOICE_ID = "3f0c9d2e8a7b4c1d9e6f5a4b3c2d1e0f"
CONSENT_PHRASE: dict[str, Any] = {
    "code": "k7p2m9x4",
    "text": "amber lanterns follow seven quiet rivers",
    "expires_at": 1764849600.0,
    "expires_in_s": 900,
}
VOICE: dict[str, Any] = {
    "id": VOICE_ID,
    "name": "Narrator",
    "language": "en",
    "state": "active",
    "owner": "a1b2c3d4e5f6",
    "created_at": 1764848700.0,
    "references": 2,
    "consent_sha256": "9b74c9897bac770ffc029102a200c5de2e7cbba0c1e1a6e2f0f6b9c47a3f1e2d",
    "phrase": "amber lanterns follow seven quiet rivers",
    "checks": [
        {"name": "phrase", "passed": True, "detail": "all 6 words heard", "score": 1.0, "threshold": 0.8},
        {"name": "speaker", "passed": True, "detail": "same speaker", "score": 0.86, "threshold": 0.75},
    ],
    "approved_by": None,
    "approved_at": None,
}


class ConsentPhraseView(BaseModel):
    """A phrase to read aloud in the consent clip, and its one-time code."""

    model_config = ConfigDict(json_schema_extra={"examples": [CONSENT_PHRASE]})

    code: str = Field(description="Send it as consent_code with the clip; single use")
    text: str = Field(description="What the speaker reads aloud, in their own voice")
    expires_at: float = Field(description="Unix time after which the code is refused")
    expires_in_s: int = Field(description="Seconds it stays valid")


class CheckView(BaseModel):
    """One consent check's outcome with its figure."""

    name: str = Field(description="phrase, speaker, quality checks, protected, ...")
    passed: bool
    detail: str
    score: float | None = None
    threshold: float | None = None


class VoiceView(BaseModel):
    """A voice of the library as its owner (or an admin) sees it."""

    model_config = ConfigDict(json_schema_extra={"examples": [VOICE]})

    id: str
    name: str
    language: str
    state: VoiceState
    owner: str | None = Field(None, description="API key id that made it (null on a keyless server)")
    created_at: float
    references: int = Field(description="Reference clips kept")
    consent_sha256: str = Field(description="SHA-256 of the consent clip as uploaded (also in the audit log)")
    phrase: str = Field(description="The phrase the consent clip had to contain")
    checks: list[CheckView] = Field(default_factory=list, description="The verification's checks")
    approved_by: str | None = Field(None, description="Admin key id that approved it (pending_approval)")
    approved_at: float | None = None


class CloningPolicyView(BaseModel):
    """How this server treats voice cloning (``SOUNDRY_CLONING``), for clients and the UI."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cloning": "verified",
                    "phrase_languages": ["en"],
                    "consent_code_ttl_s": 900,
                    "protected_voices": 2,
                }
            ]
        }
    )

    cloning: CloningPolicy = Field(
        description="verified: only voices of the library (consent checked); open: raw reference uploads "
        "too (a single-user local install); off: no cloning"
    )
    phrase_languages: list[str] = Field(
        description="Languages whose consent phrase is checked by speech recognition; voices in others "
        "wait for an admin's approval"
    )
    consent_code_ttl_s: int = Field(description="Seconds a consent phrase's code stays valid")
    protected_voices: int = Field(description="Protected voices on this installation's deny list")
