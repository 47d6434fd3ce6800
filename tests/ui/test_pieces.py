"""The UI's pure pieces: pictures, the jobs panel, examples, clients per key; and no torch in the UI."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from gen_server.client import SoundryClient
from gen_server.contract.batch import BatchView
from gen_server.contract.scene import SceneView
from tests.helpers import ROOT
from ui.batch_tab import error_rows, example_files, item_rows, progress_html
from ui.components import eta_text, jobs_panel, percent
from ui.examples import BUILTIN, load_examples
from ui.scenes_tab import FALLBACK_SCENE, ScenesTab
from ui.tracker import ClientPool, key_id
from ui.visuals import spectrogram_db, spectrogram_image, waveform_image


def test_ui_never_imports_torch_or_model_libraries() -> None:
    code = (
        "import sys\n"
        "from gen_server.client import SoundryClient\n"
        "from ui.app import build_ui\n"
        "build_ui(SoundryClient('http://127.0.0.1:9'))\n"
        "heavy = ('torch', 'torchaudio', 'audiocraft', 'TTS', 'piper', 'workers', 'transformers',\n"
        "         'matplotlib')\n"
        "bad = [m for m in heavy if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pictures_have_the_requested_size_and_show_the_tone() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)[:, None]  # [frames, channels]
    assert waveform_image(tone, 400, 80).size == (400, 80)
    assert spectrogram_image(tone, rate, 300, 100).size == (300, 100)
    db = spectrogram_db(tone, n_fft=1024)
    peak_bin = int(np.argmax(db.mean(axis=1)))
    assert abs(peak_bin * rate / 1024 - 2000) < rate / 1024 * 1.5
    assert waveform_image(np.zeros((0, 1), np.float32)).size == (800, 160)  # empty clip: no crash


def test_jobs_panel_escapes_text_and_shows_state_position_and_progress() -> None:
    jobs = [
        {
            "id": "a1",
            "state": "queued",
            "kind": "music",
            "model": "m",
            "progress": 0.0,
            "spec": {"prompt": "<script>alert(1)</script>", "seed": 3},
        },
        {
            "id": "b2",
            "state": "running",
            "kind": "sfx",
            "model": "m",
            "progress": 0.426,
            "eta_s": 95.0,
            "spec": {"prompt": "rain"},
        },
        {
            "id": "c3",
            "state": "succeeded",
            "kind": "speech",
            "model": "m",
            "progress": 0.9,
            "eta_s": 4.0,
            "spec": {"prompt": "hi"},
        },
        {
            "id": "d4",
            "state": "failed",
            "kind": "music",
            "model": "m",
            "progress": 0.1,
            "error": {"code": "model_unavailable", "message": "pull <it>"},
            "spec": {"prompt": "x"},
        },
    ]
    html = jobs_panel(jobs, {"a1": 2})
    assert "<script>" not in html and "&lt;script&gt;" in html and "pull &lt;it&gt;" in html
    assert "#2 in the music queue" in html
    assert "about 2 min left" in html and "about 4 s left" not in html  # finished jobs show no ETA
    assert [eta_text(s) for s in (0.2, 59, 61, 3600 + 600)] == ["1 s", "59 s", "1 min", "1 h 10 min"]
    assert 'data-job-id="b2" data-state="running" data-progress="43"' in html
    assert 'data-job-id="c3" data-state="succeeded" data-progress="100"' in html
    assert html.count("data-cancel=") == 2  # only queued and running jobs can be cancelled
    assert 'aria-label="Progress of job b2"' in html
    assert percent({"state": "running", "progress": 2.0}) == 100
    assert "No jobs yet" in jobs_panel([], {})


def test_examples_come_from_the_batch_files_in_prompts() -> None:
    examples = load_examples()
    assert all(examples[kind] for kind in ("music", "sfx", "speech"))
    shipped = {e.get("prompt") or e.get("text") for kind in examples.values() for e in kind}
    builtin = {e.get("prompt") or e.get("text") for e in BUILTIN}
    assert shipped - builtin, "nothing was read from prompts/"


def test_examples_fall_back_to_builtin_and_skip_broken_files(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("version: 1\nitems:\n  - name: a\n    promt: typo\n")
    (tmp_path / "ok.jsonl").write_text(
        '{"defaults": {"kind": "sfx", "duration_s": 2}}\n{"name": "a", "prompt": "a bell"}\n'
    )
    examples = load_examples(tmp_path)
    assert examples["sfx"] == [{"kind": "sfx", "prompt": "a bell", "duration_s": 2.0}]
    assert examples["music"] == [e for e in BUILTIN if e["kind"] == "music"]


def test_one_client_per_key_and_keys_are_not_kept_in_names() -> None:
    base = SoundryClient("http://127.0.0.1:9")
    pool = ClientPool(base, max_clients=2)
    assert pool.get(None) is base and pool.get("  ") is base
    one = pool.get("sk-soundry-one")
    assert pool.get("sk-soundry-one") is one and one is not base
    assert one._http.headers["authorization"] == "Bearer sk-soundry-one"
    assert "sk-soundry" not in key_id("sk-soundry-one") and key_id(None) == "local"
    pool.get("two")
    pool.get("three")
    assert pool.get("sk-soundry-one") is not one  # least recently used client was closed and dropped


def test_batch_progress_rows_and_examples() -> None:
    batch = BatchView.model_validate(
        {
            "id": "b1",
            "name": "pack <1>",
            "source": "pack.yaml",
            "created_at": 0.0,
            "state": "running",
            "total": 4,
            "counts": {"succeeded": 2, "failed": 1, "queued": 1},
            "items": [
                {
                    "item_id": "door-1",
                    "index": 1,
                    "line": 3,
                    "name": "door",
                    "variation": 1,
                    "seed": 9,
                    "state": "failed",
                    "file": "door.wav",
                    "job_id": "j1",
                    "error": {"code": "generation_failed", "message": "boom"},
                }
            ],
        }
    )
    page = progress_html(batch)
    assert 'data-state="running" data-progress="75"' in page and "pack &lt;1&gt;" in page
    assert "3 of 4 finished" in page
    assert item_rows(batch) == [[1, 3, "door", 1, 9, "failed: boom", "door.wav", "j1"]]
    assert error_rows([{"line": 4, "column": 5, "field": None, "message": "bad"}]) == [[4, 5, "", "bad"]]
    assert "No batch yet" in progress_html(None)
    shipped = example_files(ROOT / "prompts")
    assert "game_sfx_pack.yaml" in shipped and all(not n.endswith(".md") for n in shipped)


SCENE_LEVELS = {
    "created_at": 0.0,
    "target_lufs": -16.0,
    "true_peak_dbtp": -1.0,
    "sample_rate": 16000,
    "channels": 2,
    "planned_s": 1.0,
}
"""The fields of a scene view the Scenes tab does not look at here."""


class SceneServer:
    """Stands in for the client of the Scenes tab: the scene succeeds at once, with its export."""

    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}

    def submit_scene(self, scene: dict[str, Any]) -> SceneView:
        self.sent = scene
        queued = {"id": "s1", "name": "x", "state": "queued", "progress": 0.0, "components": []}
        return SceneView.model_validate({**queued, **SCENE_LEVELS})

    def scene(self, scene_id: str) -> SceneView:
        links = {"export": f"/v1/scenes/{scene_id}/export?format=zip"} if self.sent.get("export") else {}
        result = {
            "job_id": scene_id,
            "artifact": f"jobs/{scene_id}/audio.wav",
            "manifest": f"jobs/{scene_id}/manifest.json",
            "format": "wav",
            "sample_rate": 16000,
            "channels": 2,
            "duration_s": 1.0,
            "seed": 0,
            "model": "scene",
            "sha256": "0" * 64,
        }
        return SceneView.model_validate(
            {"id": scene_id, "name": "x", "state": "succeeded", "progress": 1.0, "components": [],
             "result": result, "links": links, **SCENE_LEVELS}
        )  # fmt: skip

    def audio(self, scene_id: str, fmt: str | None = None) -> bytes:
        out = io.BytesIO()
        sf.write(out, np.zeros((16000, 2), dtype=np.float32), 16000, format="WAV")
        return out.getvalue()

    def scene_export(self, scene_id: str, fmt: str = "zip") -> bytes:
        return b"PK\x05\x06" + bytes(18)  # an empty zip


def test_scene_render_asks_for_the_export_and_offers_its_zip() -> None:
    server = SceneServer()
    tab = ScenesTab(server, {"a.yaml": FALLBACK_SCENE})  # type: ignore[arg-type]
    *_, last = tab.render(FALLBACK_SCENE, True)
    assert server.sent["export"] is True
    bundle = last[-1]
    assert bundle.endswith("s1.zip") and Path(bundle).read_bytes() == server.scene_export("s1")
    *_, plain = tab.render(FALLBACK_SCENE, False)
    assert "export" not in server.sent and plain[-1] is None


def test_live_stream_length_counts_what_a_loop_generates() -> None:
    from ui.components import streamed_seconds

    assert streamed_seconds({"kind": "music", "duration_s": 8.0}) == 8.0
    assert streamed_seconds({"kind": "speech"}) is None
    loop = {"kind": "music", "duration_s": 2.0, "tempo_bpm": 120, "loop": True, "loop_bars": 1}
    assert abs(streamed_seconds(loop) - 4.84) < 0.01  # type: ignore[operator]  # 1 bar + lead-in bar + tail, +10 %
