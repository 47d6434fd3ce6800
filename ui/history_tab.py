"""The History tab: the caller's jobs from ``GET /v1/jobs`` (``api_name`` ``history``), filtered by
kind and state, and "Show in results" to put a past job's card under Results."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr

from gen_server.client import ApiError
from ui.components import job_title
from ui.forms import KINDS
from ui.page import Page, api_error, remember
from ui.tracker import ClientPool

logger = logging.getLogger(__name__)


class HistoryTab:
    """Builds the tab's controls and handlers.

    Args:
        pool: Clients per API key.
    """

    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool

    def build(self) -> None:
        """Lay out the tab (call inside ``gr.Tab``); wire it later with :meth:`wire`."""
        gr.Markdown("Your jobs on this server, newest first (from the API, with your key).")
        with gr.Row(equal_height=True):
            self.kind = gr.Dropdown(["all", *KINDS], value="all", label="Kind", elem_id="history-kind")
            self.state = gr.Dropdown(
                ["all", "queued", "running", "succeeded", "failed", "cancelled"],
                value="all",
                label="State",
                elem_id="history-state",
            )
            self.refresh = gr.Button("Refresh history", elem_id="history-refresh")
        self.table = gr.Dataframe(
            headers=["created", "kind", "model", "state", "prompt or text", "seed", "seconds", "job id"],
            value=[],
            interactive=False,
            wrap=True,
            label="History",
            elem_id="history-table",
        )
        with gr.Row(equal_height=True):
            self.pick = gr.Dropdown(
                choices=[],
                allow_custom_value=True,  # choices arrive from the API after the page loads
                value=None,
                label="Job",
                info="Pick one (or click a row) to show it under Results.",
                elem_id="history-pick",
                scale=3,
            )
            self.open_button = gr.Button("Show in results", elem_id="history-open", scale=1)

    @property
    def filters(self) -> list[Any]:
        """The kind and state pickers (after the API key, the inputs of :meth:`history`)."""
        return [self.kind, self.state]

    @property
    def outputs(self) -> list[Any]:
        """What :meth:`history` fills: the table and the job picker."""
        return [self.table, self.pick]

    def wire(self, page: Page) -> None:
        """Refresh on the tab's own controls; "Show in results" adds the picked job to the page's jobs.

        The page wires :meth:`history` on load and on a new API key (``api_name`` ``history``).
        """
        for trigger in (self.refresh.click, self.kind.change, self.state.change):
            trigger(self.history, [page.key_box, *self.filters], self.outputs, api_visibility="private")
        self.table.select(self.history_selected, None, [self.pick], api_visibility="private")
        page.refresh_after(
            self.open_button.click(
                self.show_job, [self.pick, page.my_jobs], [page.my_jobs], api_visibility="private"
            )
        )

    # -------------------------------------------------------------------------------------- handlers

    def history(self, api_key: str | None, kind: str | None, state: str | None) -> list[Any]:
        """The caller's jobs from ``GET /v1/jobs`` as table rows (newest first) and a job picker."""
        try:
            jobs = self.pool.get(api_key).list(
                kind=None if kind in (None, "all") else kind,
                state=None if state in (None, "all") else state,
                limit=50,
            )
        except ApiError as e:
            if e.status == 401:
                return [[], gr.Dropdown(choices=[], value=None)]
            raise api_error(e) from e
        except Exception as e:
            logger.warning("ui: history unavailable: %s", e)
            return [[], gr.Dropdown(choices=[], value=None)]
        rows = []
        for job in jobs:
            created = datetime.datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
            seconds = job.result.duration_s if job.result else job.spec.duration_s
            prompt = job.spec.prompt or ""
            rows.append(
                [
                    created,
                    job.kind,
                    job.model,
                    job.state,
                    prompt[:200],
                    job.spec.seed,
                    round(seconds, 2) if seconds else None,
                    job.id,
                ]
            )
        choices = [(f"{job_title(j.public(), 40)} · {j.state} · {j.id[:8]}", j.id) for j in jobs]
        return [rows, gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)]

    @staticmethod
    def history_selected(evt: gr.SelectData) -> Any:
        row = getattr(evt, "row_value", None)
        if row:
            return gr.Dropdown(value=str(row[-1]))
        return gr.skip()

    @staticmethod
    def show_job(job_id: str | None, my_jobs: Sequence[str] | None) -> list[str]:
        """Put the picked job first in the browser's jobs, so it shows under Results."""
        if not job_id:
            return list(my_jobs or [])
        return remember(job_id, my_jobs)
