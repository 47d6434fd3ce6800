"""Voice records and consent codes in Redis: the API writes them, a worker adds its verdict.

One hash per voice (:func:`keys.voice`)::

    name, language, owner, created_at, references, consent_sha256, phrase, code   written at create
    state                      verifying -> active | pending_approval (a refused voice is deleted)
    verdict                    JSON of the worker's checks (workers/voice_tasks.py), published on
                               :func:`keys.voice_events` so the waiting API request is woken (pushed)
    approved_by, approved_at   set by an admin's approval

A consent code (:func:`keys.consent_code`) is consumed atomically by :data:`CONSUME_LUA` (GET + DEL
and a ``used`` marker in one script), so two requests racing with one code cannot both pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Final

import redis
from redis.typing import EncodableT, FieldT

from gen_server.contract.voice import CheckView, VoiceState, VoiceView
from gen_server.records import keys

USED_MARKER_S: Final[int] = 24 * 3600
"""How long a consumed code is remembered (a second use is told "already used", not "unknown")."""
CODE_KEPT_S: Final[int] = 24 * 3600
"""How long an issued code's record lives; past its ``expires_at`` it is refused as expired."""

# KEYS: code, used marker. ARGV: marker ttl. Returns {'ok', json} | {'used', ''} | {'unknown', ''}.
CONSUME_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'used', ''} end
  return {'unknown', ''}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return {'ok', v}
"""

# KEYS: voice, events. ARGV: verdict JSON. Records the verdict of a voice still being verified.
VERDICT_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'verifying' then return 0 end
redis.call('HSET', KEYS[1], 'verdict', ARGV[1])
redis.call('PUBLISH', KEYS[2], 'verdict')
return 1
"""


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A consent phrase as issued: its text, who asked and when it stops being valid."""

    text: str
    owner: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class VoiceRecord:
    voice_id: str
    name: str
    language: str
    owner: str
    created_at: float
    state: VoiceState
    references: int
    consent_sha256: str
    phrase: str
    code: str
    verdict: dict[str, Any] | None = None
    approved_by: str | None = None
    approved_at: float | None = None

    @classmethod
    def parse(cls, voice_id: str, f: dict[str, str]) -> VoiceRecord:
        state: Any = f["state"]
        return cls(
            voice_id=voice_id,
            name=f["name"],
            language=f["language"],
            owner=f["owner"],
            created_at=float(f["created_at"]),
            state=state,
            references=int(f["references"]),
            consent_sha256=f["consent_sha256"],
            phrase=f["phrase"],
            code=f["code"],
            verdict=json.loads(f["verdict"]) if f.get("verdict") else None,
            approved_by=f.get("approved_by") or None,
            approved_at=float(f["approved_at"]) if f.get("approved_at") else None,
        )

    def view(self) -> VoiceView:
        checks = [CheckView.model_validate(c) for c in (self.verdict or {}).get("checks", [])]
        return VoiceView(
            id=self.voice_id,
            name=self.name,
            language=self.language,
            state=self.state,
            owner=None if self.owner == "local" else self.owner,
            created_at=self.created_at,
            references=self.references,
            consent_sha256=self.consent_sha256,
            phrase=self.phrase,
            checks=checks,
            approved_by=self.approved_by,
            approved_at=self.approved_at,
        )


class VoiceRecords:
    """Every read and write of voice records and consent codes (API and worker)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._consume = client.register_script(CONSUME_LUA)
        self._verdict = client.register_script(VERDICT_LUA)

    # ----------------------------------------------------------------------------- consent codes

    def issue_code(self, code: str, text: str, owner: str, ttl_s: int) -> IssuedCode:
        now = time.time()
        issued = IssuedCode(text=text, owner=owner, created_at=now, expires_at=now + ttl_s)
        payload = json.dumps({"text": text, "owner": owner, "created_at": now, "expires_at": now + ttl_s})
        self.redis.set(keys.consent_code(owner, code), payload, ex=max(CODE_KEPT_S, ttl_s))
        return issued

    def consume_code(self, owner: str, code: str) -> tuple[str, IssuedCode | None]:
        """Take ``code`` atomically, once: ``("ok", issued)``, ``("used", None)`` or ``("unknown", None)``."""
        status, raw = self._consume(
            keys=[keys.consent_code(owner, code), keys.consent_used(owner, code)], args=[USED_MARKER_S]
        )
        status = _text(status)
        if status != "ok":
            return status, None
        data = json.loads(_text(raw))
        return "ok", IssuedCode(data["text"], data["owner"], data["created_at"], data["expires_at"])

    # ------------------------------------------------------------------------------------ voices

    def create(self, record: VoiceRecord) -> None:
        fields: dict[FieldT, EncodableT] = {
            "name": record.name,
            "language": record.language,
            "owner": record.owner,
            "created_at": record.created_at,
            "state": record.state,
            "references": record.references,
            "consent_sha256": record.consent_sha256,
            "phrase": record.phrase,
            "code": record.code,
        }
        pipe = self.redis.pipeline()
        pipe.hset(keys.voice(record.voice_id), mapping=fields)
        pipe.zadd(keys.ALL_VOICES, {record.voice_id: record.created_at})
        pipe.zadd(keys.owner_voices(record.owner), {record.voice_id: record.created_at})
        pipe.execute()

    def read(self, voice_id: str) -> VoiceRecord | None:
        fields: dict[str, str] = self.redis.hgetall(keys.voice(voice_id))  # type: ignore[assignment]
        return VoiceRecord.parse(voice_id, fields) if fields else None

    def ids(self, owner: str | None) -> list[str]:
        """Voice ids, newest first: ``owner``'s, or every voice (``None``)."""
        index = keys.ALL_VOICES if owner is None else keys.owner_voices(owner)
        return [str(i) for i in self.redis.zrevrange(index, 0, -1)]

    def set_state(self, voice_id: str, state: VoiceState, **extra: str | float) -> None:
        fields: dict[FieldT, EncodableT] = {"state": state}
        fields.update(extra)
        self.redis.hset(keys.voice(voice_id), mapping=fields)

    def delete(self, voice_id: str, owner: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(keys.voice(voice_id))
        pipe.zrem(keys.ALL_VOICES, voice_id)
        pipe.zrem(keys.owner_voices(owner), voice_id)
        pipe.execute()

    def record_verdict(self, voice_id: str, verdict: dict[str, Any]) -> bool:
        """The worker's verdict on a voice still being verified (woken waiter); ``False`` when it is gone."""
        events = keys.voice_events(voice_id)
        return bool(self._verdict(keys=[keys.voice(voice_id), events], args=[json.dumps(verdict)]))


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
