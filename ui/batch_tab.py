"""The Batch tab: send a prompt file to ``POST /v1/batches``, follow it, cancel it, download its zip.

Everything goes through the project's client (``submit_batch``, ``batch``, ``batches``,
``cancel_batch``, ``batch_archive``); the server validates the whole file first and answers with
every error by line, which the tab lists. The current batch id is kept in the browser, so a reload
picks the batch up again; a slow timer (2 s: batch reads count against an API key's rate limit, and
each read lets the server queue the batch's waiting items) refreshes it while it runs.
"""

from __future__ import annotations

import atexit
import html
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from gen_server.client import ApiError, BatchRejected
from gen_server.contract.batch import BatchView
from ui.tracker import ClientPool

logger = logging.getLogger(__name__)

BATCH_SUFFIXES = (".yaml", ".yml", ".jsonl", ".ndjson", ".csv")
BATCH_TERMINAL = ("succeeded", "failed", "cancelled")
ITEM_HEADERS = ["#", "line", "name", "take", "seed", "state", "file", "job id"]
ERROR_HEADERS = ["line", "column", "field", "message"]
POLL_S = 2.0

PROGRESS_CSS = """
.soundry-batch progress { width: 100%; height: 1rem; }
.soundry-batch p { margin: .25rem 0; }
"""


def example_files(prompts_dir: Path) -> list[str]:
    """Batch files shipped in ``prompts/`` (offered as starting points)."""
    if not prompts_dir.is_dir():
        return []
    return sorted(p.name for p in prompts_dir.iterdir() if p.suffix.lower() in BATCH_SUFFIXES and p.is_file())


def done_count(batch: BatchView) -> int:
    return sum(batch.counts.get(state, 0) for state in BATCH_TERMINAL)


def progress_html(batch: BatchView | None) -> str:
    """The batch's state, counts per state and a progress bar (finished items / all items)."""
    if batch is None:
        return '<div class="soundry-batch"><p role="status">No batch yet.</p></div>'
    total = batch.total
    done = done_count(batch)
    pct = round(100 * done / total) if total else 0
    counts = ", ".join(f"{n} {state}" for state, n in sorted(batch.counts.items()) if n)
    name = html.escape(batch.name)
    state = html.escape(batch.state)
    return (
        f'<div class="soundry-batch" data-batch-id="{html.escape(batch.id)}" '
        f'data-state="{state}" data-progress="{pct}">'
        f'<p role="status"><strong>{name}</strong>: {state} · {done} of {total} finished'
        f"{' · ' + html.escape(counts) if counts else ''}</p>"
        f'<progress max="100" value="{pct}" aria-label="Progress of batch {name}">{pct}%</progress></div>'
    )


def item_rows(batch: BatchView | None) -> list[list[Any]]:
    rows = []
    for item in batch.items if batch is not None else []:
        state = f"{item.state}: {item.error.message}" if item.error else item.state
        rows.append(
            [item.index, item.line, item.name, item.variation, item.seed, state, item.file, item.job_id or ""]
        )
    return rows


def error_rows(errors: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[e.get("line"), e.get("column"), e.get("field") or "", e.get("message")] for e in errors]


class BatchTab:
    """Builds the tab's controls and handlers.

    Args:
        pool: Clients per API key.
        prompts_dir: Where the example batch files are.
    """

    def __init__(self, pool: ClientPool, prompts_dir: Path) -> None:
        self.pool = pool
        self.prompts_dir = prompts_dir
        self.zips = Path(tempfile.mkdtemp(prefix="soundry-ui-batches-"))
        atexit.register(shutil.rmtree, self.zips, ignore_errors=True)

    def declare_state(self) -> None:
        """The browser-kept batch id and the refresh timer: call at the top level of the Blocks, not
        inside a tab (a component in a tab that is not shown yet is not mounted, so a reload would not
        read the stored value)."""
        self.batch_id = gr.BrowserState("", storage_key="soundry-batch")
        self.timer = gr.Timer(POLL_S, active=False)

    def build(self, key_box: Any) -> None:
        """Lay out the tab (call inside ``gr.Tab``, after :meth:`declare_state`) and wire it.

        Args:
            key_box: The textbox holding the API key.
        """
        self.key_box = key_box
        gr.Markdown(
            "Run many jobs from one prompt file: YAML, JSON Lines or CSV (see `prompts/README.md` for the "
            "fields). The server checks the whole file first and queues nothing if any line is wrong."
        )
        with gr.Row():
            with gr.Column(scale=3):
                self.file = gr.File(
                    label="Batch file (YAML, JSON Lines or CSV)",
                    file_types=list(BATCH_SUFFIXES),
                    type="filepath",
                    elem_id="batch-file",
                )
            with gr.Column(scale=2):
                self.example = gr.Dropdown(
                    example_files(self.prompts_dir),
                    value=None,
                    label="Or run an example from prompts/",
                    info="Used when no file is uploaded.",
                    elem_id="batch-example",
                )
                self.run = gr.Button("Check and run batch", variant="primary", elem_id="batch-run")
        self.status = gr.Markdown(elem_id="batch-status")
        self.errors = gr.Dataframe(
            headers=ERROR_HEADERS,
            value=[],
            label="Errors in the file",
            interactive=False,
            wrap=True,
            visible=False,
            elem_id="batch-errors",
        )
        self.progress = gr.HTML(
            progress_html(None), css_template=PROGRESS_CSS, js_on_load=None, elem_id="batch-progress"
        )
        with gr.Row():
            self.pick = gr.Dropdown(
                choices=[],
                value=None,
                allow_custom_value=True,
                label="Your batches",
                info="Newest first; pick one to follow it.",
                elem_id="batch-pick",
                scale=3,
            )
            with gr.Column(scale=1, min_width=180):
                self.cancel = gr.Button("Cancel batch", variant="stop", elem_id="batch-cancel", size="md")
                self.zip = gr.Button("Prepare zip of finished files", elem_id="batch-zip", size="md")
                self.download = gr.DownloadButton("Download zip", visible=False, elem_id="batch-download")
        self.items = gr.Dataframe(
            headers=ITEM_HEADERS,
            value=[],
            label="Batch items",
            interactive=False,
            wrap=True,
            elem_id="batch-items",
        )
        self._wire()

    def _wire(self) -> None:
        view_outputs = [self.status, self.progress, self.items, self.timer]
        self.run.click(
            self.submit,
            [self.file, self.example, self.key_box],
            [self.status, self.errors, self.batch_id, self.progress, self.items, self.timer],
            api_name="submit_batch",
            concurrency_limit=4,
        ).then(self.list_batches, [self.key_box, self.batch_id], [self.pick], api_visibility="private")
        self.timer.tick(
            self.refresh,
            [self.batch_id, self.key_box],
            view_outputs,
            api_name="batch",
            show_progress="hidden",
            trigger_mode="once",
        )
        self.pick.input(
            lambda chosen: chosen or "", [self.pick], [self.batch_id], api_visibility="private"
        ).then(self.refresh, [self.batch_id, self.key_box], view_outputs, api_visibility="private")
        self.cancel.click(
            self.cancel_batch, [self.batch_id, self.key_box], view_outputs, api_name="cancel_batch"
        )
        self.zip.click(self.archive, [self.batch_id, self.key_box], [self.download], api_name="batch_archive")

    def on_load(self, demo: gr.Blocks) -> None:
        """Pick up the browser's batch and the batch list when a page opens."""
        demo.load(
            self.list_batches, [self.key_box, self.batch_id], [self.pick], api_visibility="private"
        ).then(
            self.refresh,
            [self.batch_id, self.key_box],
            [self.status, self.progress, self.items, self.timer],
            api_visibility="private",
            show_progress="hidden",
        )

    # -------------------------------------------------------------------------------------- handlers

    def submit(self, path: str | None, example: str | None, api_key: str | None) -> list[Any]:
        """Send the uploaded file (else the chosen example) to ``POST /v1/batches``."""
        if path:
            source = Path(path)
        elif example and example in example_files(self.prompts_dir):
            source = self.prompts_dir / example
        else:
            raise gr.Error("Upload a batch file or choose an example first.", title="No file")
        client = self.pool.get(api_key)
        try:
            batch = client.submit_batch(source.read_bytes(), source.name)
        except BatchRejected as e:
            count = len(e.errors)
            note = f"**{source.name} was not run:** {count} error{'s' if count != 1 else ''}, listed below."
            return [
                note,
                gr.Dataframe(value=error_rows(e.errors), visible=True),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
            ]
        except ApiError as e:
            raise gr.Error(e.message, title=f"{e.code} ({e.status})") from e
        note = f"Batch **{batch.name}** queued: {batch.total} files (batch `{batch.id[:8]}`)."
        running = batch.state not in BATCH_TERMINAL
        return [
            note,
            gr.Dataframe(value=[], visible=False),
            batch.id,
            progress_html(batch),
            item_rows(batch),
            gr.Timer(active=running),
        ]

    def refresh(self, batch_id: str | None, api_key: str | None) -> list[Any]:
        """``GET /v1/batches/{id}``: progress, items; the timer stops once the batch has ended."""
        if not batch_id:
            return [gr.skip(), progress_html(None), [], gr.Timer(active=False)]
        try:
            batch = self.pool.get(api_key).batch(batch_id)
        except ApiError as e:
            return [
                f"Batch `{batch_id[:8]}` is not available: {e.message}",
                progress_html(None),
                [],
                gr.Timer(active=False),
            ]
        except Exception as e:  # the API is briefly unreachable: try again on the next tick
            logger.debug("ui: batch %s unavailable: %s", batch_id, e)
            return [gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        running = batch.state not in BATCH_TERMINAL
        return [gr.skip(), progress_html(batch), item_rows(batch), gr.Timer(active=running)]

    def cancel_batch(self, batch_id: str | None, api_key: str | None) -> list[Any]:
        if not batch_id:
            raise gr.Error("No batch to cancel.", title="No batch")
        try:
            batch = self.pool.get(api_key).cancel_batch(batch_id)
        except ApiError as e:
            raise gr.Error(e.message, title=f"{e.code} ({e.status})") from e
        return [
            f"Batch `{batch_id[:8]}` cancelled.",
            progress_html(batch),
            item_rows(batch),
            gr.Timer(active=False),
        ]

    def archive(self, batch_id: str | None, api_key: str | None) -> Any:
        """A zip of the finished files (``GET /v1/batches/{id}/archive``) behind a download button."""
        if not batch_id:
            raise gr.Error("No batch yet.", title="No batch")
        try:
            data = self.pool.get(api_key).batch_archive(batch_id)
        except ApiError as e:
            raise gr.Error(e.message, title=f"{e.code} ({e.status})") from e
        safe = "".join(c for c in batch_id if c.isalnum())[:32] or "batch"
        path = self.zips / f"batch-{safe}.zip"
        path.write_bytes(data)
        return gr.DownloadButton(f"Download zip ({len(data) / 1024:.0f} KiB)", value=str(path), visible=True)

    def list_batches(self, api_key: str | None, current: str | None) -> Any:
        try:
            batches = self.pool.get(api_key).batches(limit=30)
        except Exception as e:  # no key yet, or the API is down: an empty list says enough
            logger.debug("ui: batches unavailable: %s", e)
            return gr.Dropdown(choices=[], value=None)
        choices = [(f"{b.name} · {b.total} files · {b.id[:8]}", b.id) for b in batches]
        ids = [value for _, value in choices]
        return gr.Dropdown(choices=choices, value=current if current in ids else None)
