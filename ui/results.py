"""The result cards under "Results": one per finished job (succeeded or failed), newest first.

A card shows the job's header (title, model, seed, length, licence); for a succeeded job its audio
player, waveform and spectrogram, and a download in a chosen format (the API transcodes; switching
the format fetches the file), and for speech its captions (.srt, .vtt); then the full spec and
"Reuse these settings" (:meth:`ui.gen_tab.GenTab.wire_reuse`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gen_server.client import ApiError
from ui.components import PICTURES_CSS, CardCache, card_header, pictures_html, spec_json
from ui.forms import FORMATS, Kind
from ui.gen_tab import GenTab
from ui.page import Page, api_error
from ui.tracker import Job


class ResultCards:
    """Builds the cards of the page's finished jobs (``Page.done``).

    Args:
        cards: The card files (audio, pictures, downloads) per job.
        tabs: The generation tabs by kind ("Reuse these settings" fills the job's tab).
    """

    def __init__(self, cards: CardCache, tabs: dict[Kind, GenTab]) -> None:
        self.cards = cards
        self.tabs = tabs

    def build(self, demo: gr.Blocks, page: Page) -> None:
        """Lay out the cards (call where they go on the page): redrawn on load and when ``page.done``
        changes, one card per finished job."""
        self.page = page

        @gr.render(
            inputs=[page.done, page.key_box, page.catalog],
            triggers=[demo.load, page.done.change],
            concurrency_limit=4,
        )
        def cards(done: list[Job], api_key: str, catalog: dict[str, Any]) -> None:
            if not done:
                gr.Markdown("Finished generations appear here as cards.", elem_id="soundry-no-results")
                return
            for job in done:
                self._card(job, api_key, (catalog.get(str(job.get("model"))) or {}).get("licence"))

    def _card(self, job: Job, api_key: str, licence: str | None) -> None:
        job_id = str(job["id"])
        kind: Kind = job.get("kind", "music")
        with gr.Group(elem_classes=["soundry-card"], elem_id=f"card-{job_id}", key=f"card-{job_id}"):
            gr.Markdown(card_header(job, licence), key=f"head-{job_id}", elem_classes=["soundry-card-head"])
            if job.get("state") == "succeeded":
                try:
                    files = self.cards.card(api_key, job)
                except ApiError as e:
                    gr.Markdown(f"Audio unavailable: {e.message}", key=f"err-{job_id}")
                else:
                    gr.Audio(
                        str(files.audio),
                        label=f"Audio of job {job_id[:8]}",
                        interactive=False,
                        key=f"audio-{job_id}",
                        elem_id=f"audio-{job_id}",
                        buttons=["download"],
                    )
                    gr.HTML(
                        pictures_html(files, job_id),
                        css_template=PICTURES_CSS,
                        js_on_load=None,
                        key=f"pictures-{job_id}",
                        elem_id=f"pictures-{job_id}",
                    )
                    fmt = str((job.get("result") or {}).get("format") or "wav")
                    with gr.Row(equal_height=True):
                        pick = gr.Dropdown(
                            list(FORMATS),
                            value=fmt,
                            label="Download format",
                            interactive=True,
                            key=f"fmt-{job_id}",
                            elem_id=f"fmt-{job_id}",
                        )
                        first = self.cards.download(api_key, job_id, fmt) if fmt != "wav" else files.audio
                        button = gr.DownloadButton(
                            f"Download {fmt.upper()}",
                            value=str(first),
                            key=f"dl-{job_id}",
                            elem_id=f"dl-{job_id}",
                        )

                    def prepare(chosen: str, key: str) -> Any:
                        try:
                            path = self.cards.download(key, job_id, chosen)
                        except ApiError as e:
                            raise api_error(e) from e
                        return gr.DownloadButton(f"Download {chosen.upper()}", value=str(path))

                    pick.change(
                        prepare,
                        [pick, self.page.key_box],
                        [button],
                        api_visibility="private",
                        show_progress="minimal",
                    )
                    if (job.get("result") or {}).get("words"):  # speech: subtitles that match the audio
                        with gr.Row():
                            for sub in ("srt", "vtt"):
                                gr.DownloadButton(
                                    f"Captions (.{sub})",
                                    value=str(self.cards.captions(api_key, job_id, sub)),
                                    key=f"cap-{sub}-{job_id}",
                                    elem_id=f"captions-{sub}-{job_id}",
                                    size="sm",
                                )
            with gr.Accordion("Full spec", open=False, key=f"spec-acc-{job_id}"):
                gr.Code(
                    spec_json(job),
                    language="json",
                    label="Spec (JSON)",
                    interactive=False,
                    key=f"code-{job_id}",
                )
            reuse = gr.Button(
                "Reuse these settings", key=f"reuse-{job_id}", elem_id=f"reuse-{job_id}", size="sm"
            )
            tab = self.tabs.get(kind)
            if tab is not None:
                tab.wire_reuse(reuse, job, self.page.tabs_box)
