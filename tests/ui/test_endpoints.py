"""The UI's Gradio endpoints, called with gradio_client against a real server (API + UI + worker)."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from gen_server.auth import KeyStore, keys_path
from gen_server.client import SoundryClient
from tests.helpers import ROOT
from tests.ui.server import shared_data_dir

pytestmark = pytest.mark.e2e

SPEECH = "piper-en_US-joe-medium"


class UiApi:
    """Calls a named UI endpoint; parameters without a UI default are sent as ``None`` unless given."""

    def __init__(self, url: str) -> None:
        self.client = Client(url, verbose=False)
        self.info = self.client.view_api(return_format="dict", print_info=False)["named_endpoints"]

    def __call__(self, endpoint: str, **kwargs: Any) -> Any:
        params = self.info[endpoint]["parameters"]
        full = {p["parameter_name"]: None for p in params if not p["parameter_has_default"]}
        full.update(kwargs)
        return self.client.predict(api_name=endpoint, **full)

    def wait(
        self, my_jobs: list[str], state: str = "succeeded", timeout_s: float = 300.0, api_key: str = ""
    ) -> str:
        """Poll ``/jobs`` (what the page's timer calls) until the newest job shows ``state``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            panel = self("/jobs", my_jobs=my_jobs, api_key=api_key)[0]
            if isinstance(panel, str) and f'data-job-id="{my_jobs[0]}" data-state="{state}"' in panel:
                return panel
            time.sleep(0.3)
        raise AssertionError(f"job {my_jobs[0]} not {state} after {timeout_s} s")


@pytest.fixture(scope="module")
def ui(ui_server: str) -> Iterator[UiApi]:
    api = UiApi(ui_server + "/ui/")
    yield api
    api.client.close()


def test_api_page_names_every_control(ui: UiApi) -> None:
    assert {
        "/models",
        "/submit_music",
        "/submit_sfx",
        "/submit_speech",
        "/jobs",
        "/cancel",
        "/history",
    } <= set(ui.info)
    music = [p["parameter_name"] for p in ui.info["/submit_music"]["parameters"]]
    for name in (
        "prompt",
        "duration_s",
        "model",
        "seed",
        "top_k",
        "top_p",
        "temperature",
        "cfg_coef",
        "melody",
        "continuation",
        "format",
        "target_lufs",
        "api_key",
        "my_jobs",
    ):
        assert name in music
    speech = [p["parameter_name"] for p in ui.info["/submit_speech"]["parameters"]]
    for name in ("text", "voice", "language", "speed", "references", "reference_mic"):
        assert name in speech


def test_models_fill_each_tab_with_licences(ui: UiApi) -> None:
    status, music, sfx, speech = ui("/models", api_key="")
    assert status.startswith("Connected to")
    assert music["value"] == "dev-musicgen-tiny"
    assert ["audiogen-medium — CC-BY-NC-4.0 · non-commercial", "audiogen-medium"] in sfx["choices"]
    assert SPEECH in [value for _, value in speech["choices"]]


def test_speech_through_the_ui_endpoints(ui: UiApi, api: SoundryClient) -> None:
    status, my_jobs, _timer = ui(
        "/submit_speech", text="Soundry speaks.", model=SPEECH, seed="5", api_key="", my_jobs=[]
    )
    assert "Queued speech job" in status and "seed 5" in status
    job_id = my_jobs[0]
    panel = ui.wait(my_jobs)
    assert f'data-job-id="{job_id}" data-state="succeeded" data-progress="100"' in panel
    samples, rate = sf.read(io.BytesIO(api.audio(job_id)), dtype="float32")
    assert rate == 22050 and samples.size > 0
    table, pick = ui("/history", api_key="", kind="speech", state="succeeded")
    assert job_id in [row[-1] for row in table["data"]]
    assert pick["value"] == job_id


@pytest.mark.parametrize(
    ("override", "field"),
    [({"top_k": 100}, "sampling.top_k"), ({"seed": "abc"}, "seed"), ({"prompt": "  "}, "prompt")],
)
def test_the_api_rules_come_back_naming_the_field(ui: UiApi, override: dict[str, Any], field: str) -> None:
    kwargs = {
        "prompt": "calm piano",
        "duration_s": 1.0,
        "model": "dev-musicgen-tiny",
        "api_key": "",
        "my_jobs": [],
        **override,
    }
    with pytest.raises(AppError) as info:
        ui("/submit_music", **kwargs)
    assert str(info.value).startswith(f"{field}:"), str(info.value)


def test_stable_audio_from_the_sound_effects_tab(ui: UiApi, api: SoundryClient) -> None:
    """The sfx tab offers Stable Audio; its denoising steps and negative prompt reach the job's spec."""
    _status, _music, sfx, _speech = ui("/models", api_key="")
    assert "dev-stable-audio-tiny" in [value for _, value in sfx["choices"]]
    status, my_jobs, _timer = ui(
        "/submit_sfx",
        prompt="glass breaks",
        duration_s=1.0,
        model="dev-stable-audio-tiny",
        steps=3,
        negative_prompt="hiss",
        cfg_coef=6.0,
        api_key="",
        my_jobs=[],
    )
    assert "Queued sound effects job" in status, status
    sampling = api.get(my_jobs[0]).spec.sampling
    assert (sampling.steps, sampling.negative_prompt, sampling.cfg_coef) == (3, "hiss", 6.0)


def test_reference_audio_is_uploaded_for_continuation(ui: UiApi, api: SoundryClient, tmp_path: Path) -> None:
    clip = tmp_path / "riff.wav"
    t = np.arange(16000) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    _, my_jobs, _ = ui(
        "/submit_music",
        prompt="continue this riff",
        duration_s=1.5,
        model="dev-musicgen-tiny",
        continuation=handle_file(str(clip)),
        api_key="",
        my_jobs=[],
    )
    ui.wait(my_jobs)
    job = api.get(my_jobs[0])
    assert job.spec.continuation_upload and job.spec.melody_upload is None
    assert job.result is not None and job.result.duration_s == pytest.approx(1.5, abs=0.05)


def test_voice_cloning_uploads_the_references(ui: UiApi, api: SoundryClient, tmp_path: Path) -> None:
    """XTTS (the tiny dev one) from the Speech tab: reference files and the language reach the job."""
    t = np.arange(2 * 24000) / 24000
    clips = []
    for i, hz in enumerate((140.0, 210.0)):
        clips.append(tmp_path / f"voice-{i}.wav")
        sf.write(clips[-1], (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 24000)
    _, my_jobs, _ = ui(
        "/submit_speech",
        text="Bonjour.",
        model="dev-xtts-tiny",
        language="fr",
        references=[handle_file(str(c)) for c in clips],
        api_key="",
        my_jobs=[],
    )
    ui.wait(my_jobs)
    spec = api.get(my_jobs[0]).spec
    assert spec.language == "fr" and len(spec.reference_uploads) == 2
    samples, rate = sf.read(io.BytesIO(api.audio(my_jobs[0])), dtype="float32")
    assert rate == 24000 and samples.size > 0


def test_cancel_endpoint(ui: UiApi, api: SoundryClient) -> None:
    assert ui("/cancel", job_id=None, api_key="").startswith("No job selected")
    long_text = "This sentence keeps the voice busy for a while. " * 60
    _, my_jobs, _ = ui("/submit_speech", text=long_text, model=SPEECH, api_key="", my_jobs=[])
    note = ui("/cancel", job_id=my_jobs[0], api_key="")
    assert note == f"Job `{my_jobs[0][:8]}` is cancelled."
    ui.wait(my_jobs, state="cancelled", timeout_s=120)
    assert api.wait(my_jobs[0], timeout_s=120).state == "cancelled"


def test_client_events_follow_a_job_to_its_end(api: SoundryClient) -> None:
    job = api.submit({"kind": "speech", "model": SPEECH, "text": "Events, please.", "seed": 2})
    views = list(api.events(job.id, poll_s=0.1, read_timeout_s=300))  # it may wait behind others
    assert views[-1].state == "succeeded" and views[-1].progress == 1.0
    progress = [v.progress for v in views]
    assert progress == sorted(progress)
    assert list(api.progress(job.id)) == [("succeeded", 1.0)]  # a finished job: one event, then the end


BATCH = (
    '{"name": "ui-endpoint-batch", "defaults": {"kind": "speech", "model": "piper-en_US-joe-medium"}}\n'
    '{"name": "one", "text": "First line of the batch."}\n'
    '{"name": "two", "text": "Second line of the batch.", "seed": 4}\n'
)


def test_batch_file_with_errors_is_listed_by_line_and_not_run(ui: UiApi) -> None:
    status, errors, *_ = ui(
        "/submit_batch",
        path=handle_file(str(ROOT / "prompts" / "invalid_example.yaml")),
        example=None,
        api_key="",
    )
    assert "invalid_example.yaml was not run" in status
    rows = errors["value"]["data"] if "value" in errors else errors["data"]
    assert len(rows) >= 5
    assert [14, 5, "promt", "unknown field (did you mean 'prompt'?)"] in rows, rows


def test_batch_runs_and_its_zip_downloads(ui: UiApi, tmp_path: Path) -> None:
    source = tmp_path / "lines.jsonl"
    source.write_text(BATCH)
    status, _, batch_id, progress, items, _ = ui(
        "/submit_batch", path=handle_file(str(source)), example=None, api_key=""
    )
    assert "ui-endpoint-batch" in status and "2 files" in status
    assert len(items["data"]) == 2
    deadline = time.monotonic() + 300
    while 'data-state="succeeded"' not in progress and time.monotonic() < deadline:
        time.sleep(0.5)
        _, progress, items, _ = ui("/batch", batch_id=batch_id, api_key="")
    assert 'data-state="succeeded" data-progress="100"' in progress, progress
    assert [row[5] for row in items["data"]] == ["succeeded", "succeeded"]
    download = ui("/batch_archive", batch_id=batch_id, api_key="")
    path = download["value"] if isinstance(download, dict) else download
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(n.endswith("manifest.jsonl") for n in names)
    assert sum(n.endswith(".wav") for n in names) == 2, names


def test_with_api_keys_each_person_sees_only_their_own_jobs(ui: UiApi) -> None:
    """Keys switched on while the server runs (the key file is re-read); switched off again after."""
    store = KeyStore(keys_path(shared_data_dir()))
    secret, record = store.create("ui-test")
    try:
        assert "needs an API key" in ui("/models", api_key="")[0]
        assert "Signed in with your API key" in ui("/models", api_key=secret)[0]
        _, my_jobs, _ = ui("/submit_speech", text="Only mine.", model=SPEECH, api_key=secret, my_jobs=[])
        panel = ui.wait(my_jobs, api_key=secret)
        assert "Only mine." in panel
        table, _ = ui("/history", api_key=secret, kind="all", state="all")
        assert [row[-1] for row in table["data"]] == my_jobs  # none of the keyless jobs
        stranger = ui("/jobs", my_jobs=my_jobs, api_key="")[0]  # a page without the key
        assert "Only mine." not in stranger and 'data-state="missing"' in stranger
        with pytest.raises(AppError, match="API key"):
            ui("/submit_speech", text="No key.", model=SPEECH, api_key="", my_jobs=[])
    finally:
        store.revoke(record.id)
    assert ui("/models", api_key="")[0].startswith("Connected to")


def test_voices_tab_endpoints(ui: UiApi, tmp_path: Path) -> None:
    """The Voices tab on an open (single-user) server: it says so, hands out a phrase, and a voice whose
    consent clip is a tone is refused with the failing check shown (the real worker verifies it)."""
    assert {"/voice_policy", "/voice_phrase", "/voice_create", "/voices", "/voice_delete"} <= set(ui.info)
    speech = [p["parameter_name"] for p in ui.info["/submit_speech"]["parameters"]]
    assert "voice_id" in speech
    assert "single-user" in ui("/voice_policy", api_key="")
    text, code = ui("/voice_phrase", api_key="")
    assert code and "Read this aloud" in text
    t = np.arange(3 * 16000) / 16000
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 16000)
    verdict = ui(
        "/voice_create",
        api_key="",
        name="Tone",
        language="en",
        references=[handle_file(str(tone))],
        reference_mic=None,
        consent=handle_file(str(tone)),
        code=code,
    )
    assert verdict.startswith("**Refused**") and "consent check '" in verdict
    table, *_ = ui("/voices", api_key="")
    assert table["data"] == [] or all(row[-1] for row in table["data"])
