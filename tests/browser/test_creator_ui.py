"""The creator UI in a real browser: speech and dev-preset music end to end, queue, cancel, reload.

One page for the module (tests run in order and build on each other's jobs), against one real
``soundry serve`` (embedded Redis, Celery worker, API, UI). Screenshots: ``test-artifacts/browser/``.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import srt

from gen_server.auth import KeyStore, keys_path
from tests.ui.server import paced_music_s, shared_data_dir

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SPEECH_MODEL = "piper-en_US-joe-medium"
MUSIC_PROMPT = "warm analog synth pad"
JOBS = "#soundry-jobs li.soundry-job"
RUN: dict[str, str] = {}  # job ids that later tests in the module look at

# Every visible form control must have an accessible name (label, aria-label or aria-labelledby).
UNLABELLED_JS = """
() => [...document.querySelectorAll('input, textarea, select, button')]
  .filter(el => el.offsetParent !== null && el.type !== 'hidden' && el.type !== 'file')
  .filter(el => {
    const name = (el.labels && [...el.labels].map(l => l.innerText).join(' ').trim())
      || el.getAttribute('aria-label') || el.getAttribute('title')
      || (el.getAttribute('aria-labelledby') || '').split(' ')
           .map(id => document.getElementById(id)?.innerText || '').join(' ').trim()
      || (el.tagName === 'BUTTON' ? el.innerText.trim() : '');
    return !name;
  })
  .map(el => el.outerHTML.slice(0, 160))
"""

# One job row's state, percentage and progress-bar value, read at one instant.
READ_ROW_JS = """
(id) => {
  const row = document.querySelector(`li.soundry-job[data-job-id="${id}"]`);
  const bar = row && row.querySelector('progress');
  return row && [row.dataset.state, Number(row.dataset.progress), Number(bar.value)];
}
"""


@pytest.fixture(scope="module")
def page(browser: Any, ui_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # a generous wait only ends early when the page is ready
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(ui_url)
    pg.get_by_text("Connected to").wait_for()
    yield pg
    context.close()


def _shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def _newest_job(page: Any, known: set[str], timeout_s: float = 120.0) -> str:
    """The id of a job row that was not in ``known`` (the one just submitted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ids = page.locator(JOBS).evaluate_all("els => els.map(e => e.dataset.jobId)")
        fresh = [i for i in ids if i not in known]
        if fresh:
            return str(fresh[0])
        time.sleep(0.1)
    raise AssertionError("no new job appeared under 'Your jobs'")


def _job_ids(page: Any) -> set[str]:
    return set(page.locator(JOBS).evaluate_all("els => els.map(e => e.dataset.jobId)"))


def _follow(page: Any, job_id: str, timeout_s: float = 300.0) -> list[tuple[str, int]]:
    """Watch a job's row until it ends; returns the (state, percent) pairs seen, in order."""
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = page.evaluate(READ_ROW_JS, job_id)
        if row:
            state, pct, bar = row
            assert bar == pct, f"progress bar {bar} != {pct}"
            if not seen or seen[-1] != (state, pct):
                seen.append((state, int(pct)))
            if state in ("succeeded", "failed", "cancelled"):
                return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s; seen {seen}")


def _choose(page: Any, elem_id: str, text: str) -> None:
    """Pick a dropdown option with the keyboard: focus, clear, type to filter, arrow down, Enter."""
    field = page.locator(f"#{elem_id} input")
    field.focus()
    page.keyboard.press("Control+a")
    page.keyboard.type(text)
    page.get_by_role("option", name=text).first.wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert field.input_value().startswith(text)


def _open_tab(page: Any, name: str) -> None:
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.focus()
    page.keyboard.press("Enter")
    assert tab.get_attribute("aria-selected") == "true"


def test_every_tab_loads_with_models_licences_and_labelled_controls(page: Any, artifacts: Path) -> None:
    page.locator("#music-model-info").get_by_text("Licence: random weights").wait_for()
    assert page.locator("#music-model input").input_value().startswith("dev-musicgen-tiny")
    for tab, prefix in (("Music", "music"), ("Sound effects", "sfx"), ("Speech", "speech")):
        _open_tab(page, tab)
        for accordion in page.locator(f"#tab-{prefix} button.label-wrap").all():
            if accordion.is_visible():
                accordion.click()
        assert page.locator(f"#{prefix}-examples label").count() > 0, "no examples from prompts/"
        unlabelled = page.evaluate(UNLABELLED_JS)
        assert unlabelled == [], f"unlabelled controls in {tab}: {unlabelled}"
        _shot(page, artifacts, f"01-tab-{prefix}")
    for tab, prefix in (("Batch", "batch"), ("Voices", "voices"), ("History", "history")):
        _open_tab(page, tab)
        unlabelled = page.evaluate(UNLABELLED_JS)
        assert unlabelled == [], f"unlabelled controls in {tab}: {unlabelled}"
        _shot(page, artifacts, f"01-tab-{prefix}")
    assert page.errors == []


def test_speech_generates_plays_and_downloads(page: Any, artifacts: Path) -> None:
    _open_tab(page, "Speech")
    _choose(page, "speech-model", SPEECH_MODEL)
    page.locator("#speech-text textarea").fill("Welcome to Soundry. This voice was generated in a test.")
    known = _job_ids(page)
    page.locator("#speech-generate").focus()
    page.keyboard.press("Enter")  # keyboard only
    job_id = _newest_job(page, known)
    seen = _follow(page, job_id)
    assert seen[-1] == ("succeeded", 100), seen

    card = page.locator(f"#card-{job_id}").first  # Gradio repeats a group's id on its inner box
    card.wait_for()
    assert SPEECH_MODEL in card.inner_text()
    pictures = page.locator(f"#pictures-{job_id} img")
    assert pictures.count() == 2
    assert pictures.evaluate_all("els => els.map(e => e.naturalWidth)") == [800, 800]
    assert "Waveform" in (pictures.first.get_attribute("alt") or "")

    player = page.locator(f"#audio-{job_id}").first
    clock = f"#audio-{job_id} .timestamps"
    page.wait_for_function(f"() => document.querySelector('{clock}')?.lastElementChild?.innerText > '0:00'")
    player.get_by_role("button", name="Play", exact=True).click()
    player.get_by_role("button", name="Pause", exact=True).wait_for()  # playing
    page.wait_for_function(f"() => document.querySelector('{clock}').firstElementChild.innerText > '0:00'")
    _shot(page, artifacts, "02-speech-result")

    _choose(page, f"fmt-{job_id}", "mp3")
    download_button = page.locator(f"#dl-{job_id}")
    download_button.filter(has_text="Download MP3").wait_for()
    with page.expect_download() as info:
        download_button.click()
    target = artifacts / "speech.mp3"
    info.value.save_as(str(target))
    assert info.value.suggested_filename == f"{job_id}.mp3"
    head = target.read_bytes()[:3]
    assert head == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3"), head

    # the narration's subtitles, from the same card: a real SRT parser reads every word back in order
    with page.expect_download() as info:
        page.locator(f"#captions-srt-{job_id}").click()
    subtitles = artifacts / "speech.srt"
    info.value.save_as(str(subtitles))
    assert info.value.suggested_filename == f"{job_id}.srt"
    cues = list(srt.parse(subtitles.read_text()))
    assert " ".join(c.content.replace("\n", " ") for c in cues).split() == (
        ["Welcome", "to", "Soundry.", "This", "voice", "was", "generated", "in", "a", "test."]
    )
    assert page.errors == []


def test_music_on_the_dev_preset_shows_live_progress(page: Any, artifacts: Path) -> None:
    _open_tab(page, "Music")
    assert page.locator("#music-model input").input_value().startswith("dev-musicgen-tiny")
    page.locator("#music-prompt textarea").fill(MUSIC_PROMPT)
    duration = page.locator("#music-duration input[type=number]")
    duration.fill("1.5")  # paced steps on the shared server: >= 3.75 s running, seen live on any CPU
    duration.press("Tab")
    page.locator("#music-seed textarea").fill("7")
    known = _job_ids(page)
    page.locator("#music-generate").click()
    job_id = _newest_job(page, known)
    RUN["music"] = job_id
    seen = _follow(page, job_id)
    _shot(page, artifacts, "03-music-progress-done")
    assert seen[-1] == ("succeeded", 100), seen
    assert any(state == "running" and 0 < pct < 100 for state, pct in seen), f"no live progress seen: {seen}"
    percents = [pct for _, pct in seen]
    assert percents == sorted(percents), seen

    card = page.locator(f"#card-{job_id}").first  # Gradio repeats a group's id on its inner box
    card.wait_for()
    text = card.inner_text()
    assert "seed 7" in text and "1.50 s" in text and "dev-musicgen-tiny" in text
    card.get_by_text("Full spec").click()
    spec = card.locator(".cm-content").first  # the spec's JSON in a code view
    spec.wait_for()
    assert '"seed": 7' in spec.inner_text() and '"duration_s": 1.5' in spec.inner_text()
    card.scroll_into_view_if_needed()
    _shot(page, artifacts, "03-music-result")
    assert page.errors == []


# A live player's state, and its job row's state, read at one instant.
READ_LIVE_JS = """
(id) => {
  const audio = document.getElementById(`live-${id}`);
  const item = audio && audio.closest('.soundry-live-item');
  const row = document.querySelector(`li.soundry-job[data-job-id="${id}"]`);
  return {
    row: row ? row.dataset.state : null,
    time: audio ? audio.currentTime : null,
    paused: audio ? audio.paused : null,
    ready: item ? Number(item.dataset.ready) : null,
    stalled: item ? item.dataset.stalled === 'true' : null,
    status: item ? item.querySelector('.status').textContent : null,
  };
}
"""


def test_music_plays_while_it_is_made(page: Any, artifacts: Path) -> None:
    """The live player starts before the job ends, never goes back, and says when it waits for the model.

    A 4 s clip on the shared server decodes for >= 10 s (paced steps): the model is slower than real
    time, as on any CPU, so playback catches up with it and the player shows the stall.
    """
    _open_tab(page, "Music")
    page.locator("#music-prompt textarea").fill("slow evolving ambient pad")
    duration = page.locator("#music-duration input[type=number]")
    duration.fill(f"{paced_music_s(10.0):g}")
    duration.press("Tab")
    known = _job_ids(page)
    page.locator("#music-generate").click()
    job_id = _newest_job(page, known)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = page.evaluate(READ_LIVE_JS, job_id)
        if now["time"] is not None:
            seen.append(now)
            if now["row"] == "running" and now["time"] > 1 and len(seen) > 1 and not seen[-2]["time"] > 1:
                _shot(page, artifacts, "03b-music-live-playing")
        if now["row"] in ("succeeded", "failed", "cancelled") and (now["time"] is None or now["paused"]):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"job {job_id} did not end; seen {seen[-3:]}")
    _shot(page, artifacts, "03b-music-live-done")
    assert seen, "no live player appeared"
    playing_while_running = [s for s in seen if s["row"] == "running" and s["time"] > 0]
    assert playing_while_running, f"nothing played before the job ended: {seen[-3:]}"
    times = [s["time"] for s in seen]
    assert times == sorted(times), "the live player went back (looped or repeated audio)"
    assert any(s["stalled"] for s in seen), "the stall (model slower than real time) was never shown"
    readies = [s["ready"] for s in seen]
    assert readies == sorted(readies)
    assert abs(readies[-1] - paced_music_s(10.0)) < 0.25, seen[-1]
    assert "ready" in seen[-1]["status"]
    assert page.errors == []


def test_two_jobs_in_flight_show_queue_position_and_one_is_cancelled(page: Any, artifacts: Path) -> None:
    _open_tab(page, "Music")
    duration = page.locator("#music-duration input[type=number]")
    # the first job's decoding lasts >= 25 s by construction (paced steps on the shared server), so the
    # second job is still queued behind it while the page is looked at and the cancel clicked
    duration.fill(f"{paced_music_s(25.0):g}")
    duration.press("Tab")
    known = _job_ids(page)
    page.locator("#music-generate").click()
    first = _newest_job(page, known)
    page.locator("#music-generate").click()
    second = _newest_job(page, known | {first})

    second_row = page.locator(f'{JOBS}[data-job-id="{second}"]')
    page.locator(f'{JOBS}[data-job-id="{second}"][data-state="queued"]').wait_for()
    second_row.filter(has_text="#1 in the music queue").wait_for(timeout=20_000)
    _shot(page, artifacts, "04-two-in-flight")

    second_row.get_by_role("button", name=f"Cancel job {second[:8]}").click()
    page.locator(f'{JOBS}[data-job-id="{second}"][data-state="cancelled"]').wait_for()
    page.locator("#soundry-cancel-note").get_by_text(f"{second[:8]} is cancelled").wait_for()
    assert _follow(page, first)[-1] == ("succeeded", 100)
    assert second_row.get_attribute("data-state") == "cancelled"
    _shot(page, artifacts, "04-one-cancelled")
    assert page.errors == []


def test_batch_file_runs_with_progress_and_its_zip_downloads(
    page: Any, artifacts: Path, tmp_path: Path
) -> None:
    source = tmp_path / "two-lines.jsonl"
    source.write_text(
        '{"name": "browser-batch", "defaults": {"kind": "speech", "model": "piper-en_US-joe-medium"}}\n'
        '{"name": "hello", "text": "Hello from a batch file."}\n'
        '{"name": "bye", "text": "Goodbye from a batch file."}\n'
    )
    _open_tab(page, "Batch")
    page.locator("#batch-file input[type=file]").set_input_files(str(source))
    page.locator("#batch-file").get_by_text("two-lines.jsonl").first.wait_for()
    page.locator("#batch-run").click()
    page.locator("#batch-status").get_by_text("browser-batch").wait_for()
    done = page.locator('#batch-progress [data-state="succeeded"][data-progress="100"]')
    done.wait_for(timeout=300_000)
    RUN["batch"] = str(done.get_attribute("data-batch-id"))
    assert page.locator("#batch-items").inner_text().count("succeeded") == 2
    page.locator("#batch-zip").click()
    button = page.locator("#batch-download")
    button.filter(has_text="Download zip").wait_for()
    with page.expect_download() as info:
        button.click()
    target = artifacts / "batch.zip"
    info.value.save_as(str(target))
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    assert sum(n.endswith(".wav") for n in names) == 2 and any(n.endswith("manifest.jsonl") for n in names)
    _shot(page, artifacts, "05-batch-done")
    assert page.errors == []


def test_reload_keeps_jobs_history_and_reuse_restores_settings(page: Any, artifacts: Path) -> None:
    before = _job_ids(page)
    page.reload()
    page.get_by_text("Connected to").wait_for()
    page.locator(JOBS).first.wait_for()
    assert _job_ids(page) == before  # the browser remembers its jobs
    music_cards = page.locator(".soundry-card", has_text=MUSIC_PROMPT)
    music_cards.first.wait_for()

    _open_tab(page, "Batch")
    page.locator(f'#batch-progress [data-batch-id="{RUN["batch"]}"]').wait_for()  # the batch is back too
    _open_tab(page, "History")
    page.wait_for_function(
        "(ids) => ids.every(id => document.querySelector('#history-table').innerText.includes(id))",
        arg=sorted(before),
    )
    _shot(page, artifacts, "06-history-after-reload")

    _open_tab(page, "Speech")
    page.locator(f"#reuse-{RUN['music']}").first.click()
    page.locator('[role="tab"][aria-selected="true"]', has_text="Music").wait_for()  # switched to Music
    page.wait_for_function("() => document.querySelector('#music-seed textarea').value === '7'")
    assert page.locator("#music-prompt textarea").input_value() == MUSIC_PROMPT
    assert page.locator("#music-duration input[type=number]").input_value() == "1.5"
    _shot(page, artifacts, "06-reused-settings")
    assert page.errors == []


def test_api_key_is_asked_for_used_and_remembered(page: Any, artifacts: Path) -> None:
    """Keys switched on while the server runs (the key file is re-read); switched off again after."""
    store = KeyStore(keys_path(shared_data_dir()))
    secret, record = store.create("browser-test")
    try:
        page.reload()
        page.get_by_text("needs an API key").wait_for()
        page.get_by_role("button", name="Settings: API key").click()
        page.locator("#soundry-api-key input").fill(secret)
        page.get_by_role("button", name="Use this key").click()
        page.get_by_text("Signed in with your API key").wait_for()
        page.reload()
        page.get_by_text("Signed in with your API key").wait_for()  # the browser kept the key
        page.wait_for_function(
            "() => document.querySelector('#music-model input').value.startsWith('dev-musicgen-tiny')"
        )
        _shot(page, artifacts, "07-signed-in-with-key")
    finally:
        store.revoke(record.id)
    assert page.errors == []
