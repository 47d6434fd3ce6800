"""``soundry batch FILE``: validate a batch file, run its jobs through the API, write a folder of files.

The runner is an ordinary API client (:class:`~gen_server.client.SoundryClient`): it validates the
whole file first (nothing is submitted from a file with any error), then keeps at most
``concurrency`` jobs in flight, downloads each finished file, writes it atomically under the output
folder and appends its line to ``manifest.jsonl``. A re-run skips every job whose file is present
with the same spec hash and SHA-256; jobs are submitted with an idempotency key derived from the
item id and spec hash, so a re-run after Ctrl-C re-attaches to jobs the server is still running.

Ctrl-C once: no new jobs are submitted and the running ones are finished and saved. Twice: the runner
stops waiting (those jobs stay queued on the server) and writes its state. Either way the manifest
lists exactly the files on disk that match the batch file, and ``summary.json`` says what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import httpx

from gen_server.batch.errors import BatchError, BatchInvalid
from gen_server.batch.manifest import manifest_entry, manifest_lines, read_manifest
from gen_server.batch.parse import parse_batch_bytes
from gen_server.batch.plan import BatchPlan, PlannedJob, idempotency_key, plan_batch
from gen_server.batch.template import MANIFEST_NAME, SUMMARY_NAME, resolve_output
from gen_server.client import TERMINAL_STATES, ApiError, SoundryClient
from gen_server.contract.catalog import Catalog, build_catalog
from gen_server.contract.result import JobError, JobView
from gen_server.errors import InvalidInput
from gen_server.files import atomic_write
from gen_server.settings import Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
RETRY_AFTER_S = 2.0  # first pause after a 429 (rate limit or job quota); doubles up to a minute

_T = TypeVar("_T")
Status = Literal["generated", "skipped", "failed", "not_run", "abandoned"]


class _Stopped(Exception):
    """Ctrl-C asked the runner to submit nothing more (or to stop waiting)."""


@dataclass(slots=True)
class Outcome:
    """What happened to one planned job in this run."""

    job: PlannedJob
    status: Status
    job_id: str | None = None
    code: str | None = None
    message: str | None = None
    entry: dict[str, Any] | None = None
    seconds: float = 0.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A one-line progress display on ``stream`` (redrawn on a TTY, one line per job otherwise)."""

    def __init__(self, total: int, skipped: int, stream: TextIO, *, tty: bool | None = None) -> None:
        self.total = total
        self.skipped = skipped
        self.generated = 0
        self.failed = 0
        self.running = 0
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = 0.0

    @property
    def finished(self) -> int:
        return self.generated + self.skipped + self.failed

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        ran = self.generated + self.failed
        remaining = self.total - self.finished
        eta = f"ETA {_clock(elapsed / ran * remaining)}" if ran and remaining else "ETA --"
        return (
            f"[batch] {self.finished}/{self.total} done | {self.failed} failed | {self.skipped} skipped"
            f" | {self.running} running | {_clock(elapsed)} elapsed | {eta}"
        )

    def job_started(self) -> None:
        with self._lock:
            self.running += 1
        self.draw()

    def job_finished(self, outcome: Outcome, *, was_running: bool) -> None:
        with self._lock:
            if was_running:
                self.running -= 1
            if outcome.status == "generated":
                self.generated += 1
            elif outcome.status == "failed":
                self.failed += 1
            else:
                return
            job = outcome.job
            if outcome.status == "failed":
                note = f"FAILED {job.label} (line {job.line}): {outcome.code}: {outcome.message}"
            else:
                note = f"ok     {job.label} -> {job.file} ({outcome.seconds:.1f} s)"
            if self.tty:
                if outcome.status == "failed":
                    self.stream.write(f"\r\x1b[K{note}\n")
                self._draw_locked(force=True)
            else:
                self.stream.write(f"[{self.finished}/{self.total}] {note}\n")
                self.stream.flush()

    def draw(self, *, force: bool = False) -> None:
        with self._lock:
            self._draw_locked(force=force)

    def _draw_locked(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self.tty or (not force and now - self._last_draw < 0.2):
            return
        self._last_draw = now
        self.stream.write(f"\r\x1b[K{self.line()}")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty:
                self.stream.write(f"\r\x1b[K{self.line()}\n")
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()


class BatchRunner:
    """Runs a validated :class:`BatchPlan` against a server, writing into ``out_dir``."""

    def __init__(
        self,
        client: SoundryClient,
        plan: BatchPlan,
        out_dir: Path,
        *,
        concurrency: int = 4,
        job_timeout_s: float = 1800.0,
        poll_s: float = 0.5,
        max_poll_s: float = 3.0,
        stream: TextIO = sys.stderr,
        tty: bool | None = None,
    ) -> None:
        self.client = client
        self.plan = plan
        self.out_dir = out_dir
        self.concurrency = max(1, concurrency)
        self.job_timeout_s = job_timeout_s
        self.poll_s = poll_s
        self.max_poll_s = max(poll_s, max_poll_s)
        self.throttled = 0  # 429 answers waited out
        self._gate_lock = threading.Lock()
        self._resume_at = 0.0
        self.stream = stream
        self.tty = tty
        self.stop = threading.Event()  # no new submissions
        self.abandon = threading.Event()  # stop waiting for running jobs
        self._manifest_lock = threading.Lock()
        self.interrupted = False

    # -- resume ------------------------------------------------------------------------------------

    def done_entries(self) -> dict[str, dict[str, Any]]:
        """Manifest entries (by item id) whose file is on disk with the same spec hash and SHA-256."""
        prior = read_manifest(self.out_dir / MANIFEST_NAME)
        done: dict[str, dict[str, Any]] = {}
        for job in self.plan.jobs:
            entry = prior.get(job.item_id)
            if not entry or entry.get("spec_hash") != job.spec_hash or entry.get("file") != job.file:
                continue
            path = resolve_output(self.out_dir, job.file)
            if path.is_file() and sha256_file(path) == entry.get("sha256"):
                done[job.item_id] = entry
        return done

    # -- one job -----------------------------------------------------------------------------------

    def _append_manifest(self, entry: dict[str, Any]) -> None:
        line = next(manifest_lines([entry])).encode()
        with self._manifest_lock, (self.out_dir / MANIFEST_NAME).open("ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _call(self, fn: Callable[..., _T], *args: Any, submitting: bool = False, **kwargs: Any) -> _T:
        """Call the API, waiting out 429s (rate limit, job quota) for every thread at once.

        Raises:
            _Stopped: while waiting to submit, Ctrl-C asked for no new jobs (or to stop waiting).
        """
        backoff = RETRY_AFTER_S
        while True:
            while True:
                with self._gate_lock:
                    delay = self._resume_at - time.monotonic()
                if delay <= 0:
                    break
                if self.abandon.wait(min(delay, 0.5)) or (submitting and self.stop.is_set()):
                    raise _Stopped
            if self.abandon.is_set() or (submitting and self.stop.is_set()):
                raise _Stopped
            try:
                return fn(*args, **kwargs)
            except ApiError as e:
                if e.status != 429:
                    raise
                with self._gate_lock:
                    self.throttled += 1
                    self._resume_at = max(self._resume_at, time.monotonic() + backoff)
                logger.debug("429 from the server (%s); pausing %.0f s", e.message, backoff)
                backoff = min(backoff * 2, 60.0)

    def _wait(self, view: JobView) -> JobView | None:
        """Poll until the job ends; ``None`` when told to abandon it (it keeps running on the server).

        The poll interval grows from ``poll_s`` to ``max_poll_s`` while the job's state stays the same,
        so long batches stay well inside per-key rate limits.
        """
        deadline = time.monotonic() + self.job_timeout_s
        interval = self.poll_s
        while view.state not in TERMINAL_STATES:
            if self.abandon.wait(interval):
                return None
            if time.monotonic() > deadline:
                try:
                    self.client.cancel(view.id)
                except (ApiError, httpx.HTTPError):
                    logger.debug("could not cancel timed-out job %s", view.id)
                message = f"no result after {self.job_timeout_s:.0f} s; cancelled"
                error = JobError(code="timeout", message=message)
                return view.model_copy(update={"state": "failed", "error": error})
            previous = view.state
            view = self._call(self.client.get, view.id)
            interval = self.poll_s if view.state != previous else min(interval * 1.5, self.max_poll_s)
        return view

    def run_job(self, job: PlannedJob, progress: Progress) -> Outcome:
        """Submit one job, wait for it, download and save its file; never raises."""
        if self.stop.is_set():
            return Outcome(job, "not_run")
        started = time.monotonic()
        outcome = Outcome(job, "failed")
        running = False
        try:
            key = idempotency_key(job)
            view = self._call(
                self.client.submit, job.request, idempotency_key=key, lane="batch", submitting=True
            )
            if view.state in ("failed", "cancelled"):  # an earlier attempt failed: try afresh
                view = self._call(self.client.submit, job.request, lane="batch", submitting=True)
            outcome.job_id = view.id
            running = True
            progress.job_started()
            final = self._wait(view)
            if final is None:
                outcome.status = "abandoned"
            elif final.state != "succeeded":
                outcome.code = final.error.code if final.error else final.state
                outcome.message = final.error.message if final.error else f"job ended {final.state}"
            else:
                data = self._call(self.client.audio, final.id)
                digest = hashlib.sha256(data).hexdigest()
                expected = final.result.sha256 if final.result else None
                if expected and expected != digest:
                    outcome.code, outcome.message = (
                        "checksum_mismatch",
                        "downloaded file differs from the result",
                    )
                else:
                    if job.captions_file is not None:  # beside the audio, written first: the audio marks done
                        text = self._call(self.client.captions, final.id, job.captions)
                        atomic_write(resolve_output(self.out_dir, job.captions_file), text.encode())
                    atomic_write(resolve_output(self.out_dir, job.file), data)
                    entry = manifest_entry(job, final)
                    entry["sha256"] = digest
                    self._append_manifest(entry)
                    outcome.status, outcome.entry = "generated", entry
        except _Stopped:
            outcome.status = "abandoned" if running else "not_run"
        except ApiError as e:
            outcome.code, outcome.message = e.code, e.message
        except httpx.HTTPError as e:
            outcome.code, outcome.message = "connection_error", f"{type(e).__name__}: {e}"
        except (OSError, InvalidInput) as e:
            outcome.code, outcome.message = "write_error", str(e)
        except Exception as e:
            logger.exception("batch job %s failed unexpectedly", job.item_id)
            outcome.code, outcome.message = "internal_error", f"{type(e).__name__}: {e}"
        outcome.seconds = time.monotonic() - started
        progress.job_finished(outcome, was_running=running)
        return outcome

    # -- the whole batch ---------------------------------------------------------------------------

    def _drain(self, futures: set[Future[Outcome]], progress: Progress) -> None:
        pending = {f for f in futures if not f.done()}
        while pending:
            _, pending = wait(pending, timeout=min(0.25, self.poll_s), return_when=FIRST_COMPLETED)
            progress.draw()

    def run(self) -> dict[str, Any]:
        """Run every job not already done; returns the summary (also written to ``summary.json``)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        done = self.done_entries()
        todo = [job for job in self.plan.jobs if job.item_id not in done]
        progress = Progress(len(self.plan.jobs), len(done), self.stream, tty=self.tty)
        self.stream.write(
            f"Batch '{self.plan.name}': {len(self.plan.jobs)} files, {len(done)} already done, "
            f"{len(todo)} to generate -> {self.out_dir}\n"
        )
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="soundry-batch")
        futures = [pool.submit(self.run_job, job, progress) for job in todo]
        presses = 0
        try:
            while True:
                try:
                    self._drain(set(futures), progress)
                    break
                except KeyboardInterrupt:
                    presses += 1
                    self.interrupted = True
                    self.stop.set()
                    if presses == 1:
                        self.stream.write(
                            f"\nStopping: no new jobs; finishing {progress.running} running "
                            "(Ctrl-C again to leave them on the server)\n"
                        )
                    elif not self.abandon.is_set():
                        self.abandon.set()
                        self.stream.write("\nLeaving running jobs on the server; a re-run picks them up.\n")
        finally:
            if self.interrupted or any(not f.done() for f in futures):
                self.stop.set()
                self.abandon.set()
            pool.shutdown(wait=True, cancel_futures=True)
            progress.close()
        outcomes: list[Outcome] = []
        by_id: dict[str, Outcome] = {}
        for job, future in zip(todo, futures, strict=True):
            by_id[job.item_id] = (
                future.result() if future.done() and not future.cancelled() else Outcome(job, "not_run")
            )
        for job in self.plan.jobs:
            outcomes.append(by_id.get(job.item_id) or Outcome(job, "skipped", entry=done.get(job.item_id)))
        self._compact_manifest(outcomes)
        summary = self._summary(outcomes, started_at)
        atomic_write(self.out_dir / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
        return summary

    def _compact_manifest(self, outcomes: list[Outcome]) -> None:
        """Rewrite the manifest atomically: one line per file of this batch on disk, in file order."""
        entries = [o.entry for o in outcomes if o.entry is not None and o.status in ("generated", "skipped")]
        atomic_write(self.out_dir / MANIFEST_NAME, "".join(manifest_lines(entries)).encode())

    def _summary(self, outcomes: list[Outcome], started_at: float) -> dict[str, Any]:
        counts = dict.fromkeys(("generated", "skipped", "failed", "not_run", "abandoned"), 0)
        for o in outcomes:
            counts[o.status] += 1
        finished_at = time.time()
        return {
            "batch": self.plan.name,
            "source": self.plan.source,
            "server": self.client.base_url,
            "out_dir": str(self.out_dir),
            "started_at": started_at,
            "finished_at": finished_at,
            "elapsed_s": round(finished_at - started_at, 3),
            "interrupted": self.interrupted,
            "throttled": self.throttled,
            "total": len(outcomes),
            "counts": counts,
            "failures": [
                {
                    "line": o.job.line,
                    "item": o.job.name,
                    "variation": o.job.variation,
                    "seed": o.job.seed,
                    "file": o.job.file,
                    "job_id": o.job_id,
                    "code": o.code,
                    "message": o.message,
                }
                for o in outcomes
                if o.status == "failed"
            ],
            "left_on_server": [
                {"line": o.job.line, "item": o.job.name, "variation": o.job.variation, "job_id": o.job_id}
                for o in outcomes
                if o.status == "abandoned"
            ],
        }


# ---------------------------------------------------------------------------------------------------
# the command


def server_catalog(client: SoundryClient) -> Catalog:
    """The server's catalog, as its ``GET /v1/models`` shows it."""
    return Catalog(client.models())


def default_server(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def print_errors(errors: list[BatchError], out: TextIO) -> None:
    for err in errors:
        out.write(f"{err}\n")
    out.write(f"{len(errors)} error{'s' if len(errors) != 1 else ''}; nothing was submitted.\n")


def run_batch(
    file: Path,
    *,
    settings: Settings,
    server: str | None = None,
    out_dir: Path | None = None,
    concurrency: int = 4,
    api_key: str | None = None,
    validate_only: bool = False,
    job_timeout_s: float = 1800.0,
    poll_s: float = 0.5,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    client_factory: Callable[[str, str | None], SoundryClient] | None = None,
) -> int:
    """The ``soundry batch`` command; returns the exit code.

    Exit codes: 0 all files done; 1 some job failed (listed by line) or the server is unreachable;
    2 the file is invalid (nothing submitted); 130 interrupted by Ctrl-C.
    """
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    source = str(file)
    try:
        data = file.read_bytes()
    except OSError as e:
        print_errors([BatchError(source, None, None, None, f"cannot read file: {e.strerror or e}")], err)
        return EXIT_INVALID
    batch, parse_errors = parse_batch_bytes(data, source)
    if parse_errors and not batch.items:
        print_errors(BatchInvalid(parse_errors).errors, err)
        return EXIT_INVALID
    url = server or default_server(settings)
    client = (client_factory or (lambda u, k: SoundryClient(u, k, timeout_s=60.0)))(url, api_key)
    try:
        try:
            catalog = server_catalog(client)
        except (httpx.HTTPError, ApiError) as e:
            if not validate_only:
                err.write(f"cannot reach the Soundry server at {url}: {e}\n")
                return EXIT_FAILED
            err.write(
                f"note: server at {url} not reachable ({type(e).__name__}); validating against the "
                "local catalog (SOUNDRY_ settings of this machine)\n"
            )
            catalog = build_catalog(settings)
        try:
            plan = plan_batch(
                batch,
                catalog,
                max_prompt_chars=settings.max_prompt_chars,
                max_text_chars=settings.max_text_chars,
                prior_errors=parse_errors,
            )
        except BatchInvalid as e:
            print_errors(e.errors, err)
            return EXIT_INVALID
        target = out_dir or Path.cwd() / f"{file.stem}-batch"
        try:
            for job in plan.jobs:
                resolve_output(target, job.file)
        except InvalidInput as e:
            print_errors([BatchError(source, None, None, "output", e.message)], err)
            return EXIT_INVALID
        items = len({job.index for job in plan.jobs})
        if validate_only:
            out.write(f"{source}: valid: {items} items, {len(plan.jobs)} files (batch '{plan.name}')\n")
            return EXIT_OK
        runner = BatchRunner(
            client,
            plan,
            target,
            concurrency=concurrency,
            job_timeout_s=job_timeout_s,
            poll_s=poll_s,
            max_poll_s=max(3.0, poll_s),
            stream=err,
        )
        summary = runner.run()
    finally:
        client.close()
    report(summary, out)
    if summary["interrupted"]:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["counts"]["failed"] else EXIT_OK


def report(summary: dict[str, Any], out: TextIO) -> None:
    """The human summary of a run, failures listed by line."""
    c = summary["counts"]
    out.write(
        f"Batch '{summary['batch']}': {summary['total']} files: {c['generated']} generated, "
        f"{c['skipped']} skipped, {c['failed']} failed"
        + (f", {c['not_run']} not run" if c["not_run"] else "")
        + (f", {c['abandoned']} left running on the server" if c["abandoned"] else "")
        + f" in {_clock(summary['elapsed_s'])}\n"
    )
    out.write(f"Output: {summary['out_dir']} ({MANIFEST_NAME}, {SUMMARY_NAME})\n")
    if summary["interrupted"]:
        out.write("Interrupted: run the same command again to finish the rest.\n")
    if summary["failures"]:
        out.write("Failures:\n")
        for f in summary["failures"]:
            out.write(
                f"  {summary['source']}:{f['line']}: {f['item']} v{f['variation']} (seed {f['seed']}): "
                f"{f['code']}: {f['message']}\n"
            )
