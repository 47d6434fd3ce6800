"""/v1/lexicon: pronunciations (word -> respelling) per language, for your key or the installation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gen_server.deps import caller
from gen_server.jobs import Caller
from gen_server.lexicon import LexiconStore, Scope

router = APIRouter(prefix="/v1/lexicon", tags=["speech"])
Who = Annotated[Caller, Depends(caller)]
Language = Annotated[str, Query(max_length=12, description="Language code", examples=["en"])]
ScopeQuery = Annotated[
    Scope, Query(description="Your key's entries or the installation's (admin)", examples=["key"])
]

EXAMPLE: dict[str, Any] = {
    "language": "en",
    "scope": "key",
    "entries": {"Soundry": "Sound ree", "GIF": "jiff"},
}


async def store(request: Request) -> LexiconStore:
    return LexiconStore(request.app.state.jobs.redis)


Store = Annotated[LexiconStore, Depends(store)]


class LexiconUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    language: str = Field("en", max_length=12, description="Language the entries apply to")
    scope: Scope = Field("key", description="key: yours; installation: every job's (admin keys only)")
    entries: dict[str, str] = Field(description="Word (one word, any case) -> how to say it, in plain words")


class LexiconView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"language": "en", "installation": {"nginx": "engine x"}, "key": {"soundry": "Sound ree"}}
            ]
        }
    )

    language: str
    installation: dict[str, str] = Field(description="Every job's entries")
    key: dict[str, str] = Field(description="Your key's entries (win over the installation's)")


@router.post("", response_model=LexiconView, summary="Add or replace pronunciations")
def put_entries(body: LexiconUpdate, lexicon: Store, who: Who) -> LexiconView:
    """Speech jobs submitted afterwards say each word as its respelling (whole words, any case)."""
    lexicon.put(who.owner, who.admin, body.language, body.entries, body.scope)
    return LexiconView(language=body.language, **lexicon.get(who.owner, body.language))


@router.get("", response_model=LexiconView, summary="The pronunciations that apply to your jobs")
def get_entries(lexicon: Store, who: Who, language: Language = "en") -> LexiconView:
    return LexiconView(language=language, **lexicon.get(who.owner, language))


@router.delete("/{language}/{word}", status_code=204, summary="Remove a pronunciation")
def delete_entry(
    lexicon: Store,
    who: Who,
    language: Annotated[str, Path(max_length=12, examples=["en"])],
    word: Annotated[str, Path(max_length=64, examples=["Soundry"])],
    scope: ScopeQuery = "key",
) -> None:
    lexicon.delete(who.owner, who.admin, language, word, scope)
