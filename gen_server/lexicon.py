"""Pronunciation lexicons: word -> respelling, per language, for one API key or the whole installation.

A speech job gets, when it is submitted, the entries whose words occur in its text (the key's own
entries win over the installation's); they travel in its spec (``JobSpec.lexicon``), so the job is
spoken the same way whenever it runs, and every engine applies them to the text before synthesis
(:func:`gen_server.speech_markup.apply_lexicon`, inside SSML only to the spoken text). A respelling is
plain words as the voice should read them ("Sound ree" for "Soundry").

Stored in Redis hashes (:func:`gen_server.records.keys.lexicon`). Installation entries are written by
an admin key (or anyone on a server without keys).
"""

from __future__ import annotations

import re
from typing import Literal

import redis
from redis.typing import EncodableT, FieldT

from gen_server.errors import Forbidden, InvalidInput, NotFound
from gen_server.records import keys
from gen_server.speech_markup import words_used

Scope = Literal["key", "installation"]
INSTALLATION = "*"
MAX_ENTRIES = 2000
"""Entries per scope and language."""
_WORD = re.compile(r"^[\w'][\w'.-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?$")


def _owner(owner: str | None, admin: bool, scope: Scope) -> str:
    if scope == "installation":
        if owner is not None and not admin:
            raise Forbidden("only an admin key may change the installation's lexicon", field="scope")
        return INSTALLATION
    return owner or "local"


def _language(language: str) -> str:
    if not _LANGUAGE.match(language):
        raise InvalidInput(f"language must be a code such as en or pt-BR, not {language!r}", field="language")
    return language.lower().replace("_", "-")


class LexiconStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def put(
        self, owner: str | None, admin: bool, language: str, entries: dict[str, str], scope: Scope = "key"
    ) -> None:
        """Add or replace entries (each checked: one word; a respelling of plain words)."""
        lang, owner = _language(language), _owner(owner, admin, scope)
        clean: dict[str, str] = {}
        for word, say in entries.items():
            if not _WORD.match(word):
                raise InvalidInput(
                    f"lexicon word {word!r} must be one word (letters, digits, ' . -)", field="entries"
                )
            say = " ".join(str(say).split())
            if not say or len(say) > 200 or any(c in say for c in "<>[]"):
                raise InvalidInput(
                    f"respelling of {word!r} must be 1-200 characters of plain text (no markup)",
                    field="entries",
                )
            clean[word.lower()] = say
        key = keys.lexicon(owner, lang)
        if len(set(self.redis.hkeys(key)) | set(clean)) > MAX_ENTRIES:
            raise InvalidInput(f"a lexicon holds at most {MAX_ENTRIES} entries per language", field="entries")
        if clean:
            mapping: dict[FieldT, EncodableT] = {k: v for k, v in clean.items()}
            self.redis.hset(key, mapping=mapping)

    def get(self, owner: str | None, language: str) -> dict[Scope, dict[str, str]]:
        lang = _language(language)
        pipe = self.redis.pipeline()
        pipe.hgetall(keys.lexicon(INSTALLATION, lang))
        pipe.hgetall(keys.lexicon(owner or "local", lang))
        installation, own = pipe.execute()
        return {"installation": dict(sorted(installation.items())), "key": dict(sorted(own.items()))}

    def delete(self, owner: str | None, admin: bool, language: str, word: str, scope: Scope = "key") -> None:
        if not self.redis.hdel(keys.lexicon(_owner(owner, admin, scope), _language(language)), word.lower()):
            raise NotFound(f"no lexicon entry {word!r} ({scope}, {language})", field="word")

    def for_text(self, owner: str | None, language: str, text: str) -> dict[str, str]:
        """The entries a job's ``text`` uses (the owner's over the installation's)."""
        try:
            lang = _language(language)
        except InvalidInput:
            return {}
        pipe = self.redis.pipeline()
        pipe.hgetall(keys.lexicon(INSTALLATION, lang))
        pipe.hgetall(keys.lexicon(owner or "local", lang))
        installation, own = pipe.execute()
        merged = {**installation, **own}
        return {w: merged[w] for w in sorted(words_used(text, merged))}
