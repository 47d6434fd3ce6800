"""The Voices tab: the voice library. Get a consent phrase, record or upload 1-3 references and the
consent clip (the speaker reading the phrase), create the voice, see the verdict (which check failed,
with its figure), list and delete voices. The Speech tab then picks a voice by id.

Endpoints for ``gradio_client`` (``api_name``): ``voice_policy``, ``voice_phrase``, ``voice_create``,
``voices``, ``voice_delete``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from gen_server.client import ApiError, SoundryClient
from gen_server.contract.catalog import XTTS_LANGUAGES
from gen_server.contract.voice import CheckView, VoiceView
from ui.page import api_error
from ui.tracker import ClientPool

logger = logging.getLogger(__name__)

LANGUAGES = XTTS_LANGUAGES
"""Languages a voice can be made in (XTTS's); the phrase is checked by speech recognition in English
only: voices in the others wait for an admin's approval."""

POLICY_TEXT = {
    "verified": "Cloning goes through this library: a voice is made only after its speaker reads a "
    "one-time phrase aloud and a worker checks that phrase, speaker and recording quality.",
    "open": "**This server is a single-user install with cloning open** (`SOUNDRY_CLONING=open`): the "
    "Speech tab also clones raw reference uploads without consent checks. Voices made here are still "
    "checked and marked.",
    "off": "**Voice cloning is off on this server** (`SOUNDRY_CLONING=off`).",
}


def checks_table(checks: Sequence[CheckView]) -> str:
    """The verdict's checks as a Markdown table (passed or failed, figure, threshold, detail)."""
    rows = ["| check | result | figure | threshold | detail |", "|---|---|---|---|---|"]
    for c in checks:
        score = "" if c.score is None else f"{c.score:.3g}"
        threshold = "" if c.threshold is None else f"{c.threshold:.3g}"
        rows.append(
            f"| {c.name} | {'passed' if c.passed else '**failed**'} | {score} | {threshold} | {c.detail} |"
        )
    return "\n".join(rows)


def voice_rows(voices: Sequence[VoiceView]) -> list[list[Any]]:
    return [
        [
            v.name,
            v.language,
            v.state.replace("_", " "),
            datetime.datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M"),
            v.id,
        ]
        for v in voices
    ]


def voice_choices(voices: Sequence[VoiceView], *, usable_only: bool = False) -> list[tuple[str, str]]:
    """(label, id) pairs for pickers: every voice (this tab's), or the usable ones (the Speech tab's)."""
    return [
        (f"{v.name} ({v.language}, {v.state.replace('_', ' ')}) · {v.id[:8]}", v.id)
        for v in voices
        if v.state == "active" or not usable_only
    ]


class VoicesTab:
    """Builds the tab's controls and handlers.

    Args:
        pool: Clients per API key.
    """

    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool

    def build(self) -> None:
        """Lay out the tab (call inside ``gr.Tab``); wire it with :meth:`wire`."""
        self.policy = gr.Markdown("", elem_id="voices-policy")
        gr.Markdown(
            "**1.** Get a phrase. **2.** Record the speaker reading it aloud (the consent clip) and 1 to 3 "
            "clean clips of their voice (5 to 30 s each). **3.** Create the voice. The phrase's code is "
            "valid for 15 minutes and works once."
        )
        with gr.Row(equal_height=True):
            self.phrase_btn = gr.Button("Get a consent phrase", elem_id="voices-phrase-btn", scale=1)
            self.phrase = gr.Markdown("", elem_id="voices-phrase")
        self.code = gr.Textbox(label="Consent code", interactive=False, elem_id="voices-code")
        with gr.Row():
            self.name = gr.Textbox(label="Voice name", placeholder="Narrator", elem_id="voices-name")
            self.language = gr.Dropdown(
                list(LANGUAGES), value="en", label="Language", elem_id="voices-language"
            )
        with gr.Row():
            self.consent = gr.Audio(
                sources=["microphone", "upload"],
                type="filepath",
                label="Consent clip: the speaker reading the phrase",
                elem_id="voices-consent",
            )
            self.reference_mic = gr.Audio(
                sources=["microphone", "upload"],
                type="filepath",
                label="Record a reference",
                elem_id="voices-reference-mic",
            )
        self.references = gr.File(
            label="Reference clips (upload 1-3)",
            file_count="multiple",
            file_types=["audio"],
            elem_id="voices-references",
        )
        self.create_btn = gr.Button("Create voice", variant="primary", elem_id="voices-create")
        self.verdict = gr.Markdown("", elem_id="voices-verdict")
        gr.Markdown("### Your voices")
        with gr.Row(equal_height=True):
            self.refresh = gr.Button("Refresh voices", elem_id="voices-refresh", scale=1)
            self.pick = gr.Dropdown(
                choices=[], allow_custom_value=True, value=None, label="Voice", elem_id="voices-pick", scale=3
            )
            self.delete_btn = gr.Button("Delete voice", variant="stop", elem_id="voices-delete", scale=1)
        self.table = gr.Dataframe(
            headers=["name", "language", "state", "created", "voice id"],
            value=[],
            interactive=False,
            label="Voices",
            elem_id="voices-table",
        )
        self.note = gr.Markdown("", elem_id="voices-note")

    def wire(self, demo: gr.Blocks, key_box: Any, speech_voice: Any | None = None) -> None:
        """Wire the buttons; ``speech_voice`` (the Speech tab's voice picker) gets the usable voices."""
        pickers = [self.pick] if speech_voice is None else [self.pick, speech_voice]
        listed = [self.table, *pickers]
        demo.load(self.policy_text, [key_box], [self.policy], api_name="voice_policy")
        self.phrase_btn.click(self.new_phrase, [key_box], [self.phrase, self.code], api_name="voice_phrase")
        self.create_btn.click(
            self.create,
            [key_box, self.name, self.language, self.references, self.reference_mic, self.consent, self.code],
            [self.verdict],
            api_name="voice_create",
        ).then(self.list_for(len(pickers)), [key_box], listed, api_visibility="private")
        self.refresh.click(self.list_for(len(pickers)), [key_box], listed, api_name="voices")
        self.delete_btn.click(self.delete, [key_box, self.pick], [self.note], api_name="voice_delete").then(
            self.list_for(len(pickers)), [key_box], listed, api_visibility="private"
        )

    # -------------------------------------------------------------------------------------- handlers

    def policy_text(self, api_key: str | None) -> str:
        try:
            return POLICY_TEXT[self.pool.get(api_key).cloning_policy().cloning]
        except Exception as e:  # the API is down, or needs a key: the other tabs say so
            logger.debug("ui: cloning policy unavailable: %s", e)
            return ""

    def new_phrase(self, api_key: str | None) -> tuple[str, str]:
        """A phrase (shown large, to read aloud) and its code (``POST /v1/voices/consent-phrase``)."""
        try:
            phrase = self.pool.get(api_key).consent_phrase()
        except ApiError as e:
            raise api_error(e) from e
        minutes = phrase.expires_in_s // 60
        return (
            f"### “{phrase.text}”\nRead this aloud in the consent clip (valid {minutes} minutes).",
            phrase.code,
        )

    def create(
        self,
        api_key: str | None,
        name: str | None,
        language: str | None,
        references: Sequence[str] | None,
        reference_mic: str | None,
        consent: str | None,
        code: str | None,
    ) -> str:
        """Upload the clips and create the voice; the verdict as Markdown (a refusal names its check)."""
        paths = [p for p in [*(references or []), reference_mic] if p]
        if not paths:
            raise gr.Error("Add 1 to 3 reference clips (upload or record).", title="references")
        if not consent:
            raise gr.Error("Record or upload the consent clip.", title="consent clip")
        if not code:
            raise gr.Error(
                "Get a consent phrase first and read it in the consent clip.", title="consent code"
            )
        client: SoundryClient = self.pool.get(api_key)
        try:
            voice = client.create_voice(
                (name or "").strip() or "My voice",
                [Path(p).read_bytes() for p in paths[:3]],
                Path(consent).read_bytes(),
                code,
                language=language or "en",
            )
        except ApiError as e:
            if e.code == "consent_refused":
                return f"**Refused** ({e.field}): {e.message}\n\nGet a new phrase to try again."
            raise api_error(e) from e
        state = "ready to use" if voice.state == "active" else "waiting for an admin's approval"
        return f"**Voice `{voice.id}` created**: {voice.name}, {state}.\n\n{checks_table(voice.checks)}"

    def list_for(self, pickers: int) -> Any:
        def voices(api_key: str | None) -> list[Any]:
            """Your voices as table rows, and the usable ones for the pickers."""
            try:
                found = self.pool.get(api_key).voices()
            except ApiError as e:
                if e.status == 401:
                    return [[], *(gr.Dropdown(choices=[], value=None) for _ in range(pickers))]
                raise api_error(e) from e
            updates = [gr.Dropdown(choices=voice_choices(found))]
            updates += [
                gr.Dropdown(choices=voice_choices(found, usable_only=True)) for _ in range(pickers - 1)
            ]
            return [voice_rows(found), *updates]

        voices.__name__ = "list_voices"  # the public endpoint is named "voices" where it is wired
        return voices

    def delete(self, api_key: str | None, voice_id: str | None) -> str:
        """Delete a voice: its clips and cached conditioning go; the audit log keeps its record."""
        if not voice_id:
            return "Pick a voice to delete."
        try:
            voice = self.pool.get(api_key).delete_voice(voice_id)
        except ApiError as e:
            raise api_error(e) from e
        return f"Deleted voice `{voice.id}` ({voice.name})."
