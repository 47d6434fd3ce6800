"""What the parts of the creator UI share: the page's components, its job list rule and its errors.

:class:`Page` holds the components that every tab reads or writes (the API key, the browser's job
ids, the model catalog, the jobs panel and its timer), so a tab's module wires its events without
importing :mod:`ui.app` (which builds the page and imports the tabs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from gen_server.client import ApiError

MAX_JOBS = 30  # job ids remembered per browser


def remember(job_id: str, my_jobs: Sequence[str] | None) -> list[str]:
    """The browser's job ids with ``job_id`` first (once), the oldest dropped past :data:`MAX_JOBS`."""
    return [job_id, *(j for j in (my_jobs or []) if j != job_id)][:MAX_JOBS]


def api_error(e: ApiError) -> gr.Error:
    """The API's error as a Gradio error toast (with a hint to enter a key on 401)."""
    where = f"{e.field}: " if e.field and not e.message.startswith(f"{e.field}:") else ""
    hint = " Enter your API key under Settings." if e.status == 401 else ""
    return gr.Error(f"{where}{e.message}{hint}", title=f"{e.code} ({e.status})")


@dataclass
class Page:
    """The page-level components the tabs and result cards wire to.

    Attributes:
        key_box: The textbox with the API key (sent with every request).
        my_jobs: The browser's job ids (``gr.BrowserState``), newest first.
        catalog: The models from ``GET /v1/models`` by id.
        shown: What "Your jobs" shows now (so a tick only sends what changed).
        done: The finished jobs that the result cards show.
        timer: The timer that refreshes "Your jobs" while anything is in flight.
        panel: The "Your jobs" panel.
        cancel_pick: The picker of the job to cancel.
        tabs_box: The page's tabs ("reuse these settings" switches to a job's tab).
        tick: The refresh of "Your jobs" (``ui.app.SoundryUI.tick``).
    """

    key_box: Any
    my_jobs: Any
    catalog: Any
    shown: Any
    done: Any
    timer: Any
    panel: Any
    cancel_pick: Any
    tabs_box: Any
    tick: Callable[..., list[Any]]

    @property
    def tick_inputs(self) -> list[Any]:
        return [self.my_jobs, self.key_box, self.shown]

    @property
    def tick_outputs(self) -> list[Any]:
        return [self.panel, self.cancel_pick, self.shown, self.done, self.timer]

    def refresh_after(self, event: Any) -> Any:
        """Refresh "Your jobs" once ``event`` (a Gradio event's dependency) has run."""
        return event.then(
            self.tick, self.tick_inputs, self.tick_outputs, api_visibility="private", show_progress="hidden"
        )
