"""Batch files end to end: ``soundry batch`` as a subprocess and ``/v1/batches`` on a real server.

Items are few and short (bundled Piper voice, one 0.5 s dev sfx clip) to keep this under a minute.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import srt
import webvtt

from gen_server.client import BatchRejected, SoundryClient
from tests.helpers import ROOT, server_env

pytestmark = pytest.mark.e2e

SMALL = """\
name: e2e-small
output: "{kind}/{index:02d}_{name}_{variation}.{format}"
defaults:
  kind: speech
  model: piper-en_US-joe-medium
items:
  - name: hello
    text: Hello from the batch runner.
    n: 2
  - name: bye
    text: Goodbye. See you tomorrow at the harbour.
    captions: srt
  - name: click
    kind: sfx
    model: dev-audiogen-tiny
    prompt: a short wooden click
    duration_s: 0.5
    seeds: [5]
"""


def soundry_batch(
    server_url: str, tmp_path: Path, *args: str, timeout_s: float = 420
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gen_server.cli", "batch", *args, "--server", server_url],
        cwd=ROOT,
        env=server_env(tmp_path / "cli-data", 1),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def newest_job(client: SoundryClient) -> str | None:
    jobs = client.list(limit=1)
    return jobs[0].id if jobs else None


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_cli_batch_writes_folder_and_manifest_and_second_run_skips(
    client: SoundryClient, server_url: str, tmp_path: Path
) -> None:
    batch = tmp_path / "small.yaml"
    batch.write_text(SMALL)
    out = tmp_path / "out"
    started = time.monotonic()
    run = soundry_batch(server_url, tmp_path, str(batch), "--out", str(out), "--concurrency", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 generated, 0 skipped, 0 failed" in run.stdout
    entries = manifest(out)
    assert [e["file"] for e in entries] == [
        "speech/01_hello_1.wav",
        "speech/01_hello_2.wav",
        "speech/02_bye_1.wav",
        "sfx/03_click_1.wav",
    ]
    for entry in entries:
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        samples, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == entry["sample_rate"] and len(samples) > 0
        assert entry["watermark_payload"] and entry["spec"]["seed"] == entry["seed"]
        job = client.get(entry["job_id"])
        assert job.state == "succeeded" and job.result is not None and job.result.sha256 == entry["sha256"]
    assert entries[0]["seed"] != entries[1]["seed"]
    assert entries[3]["seed"] == 5 and entries[3]["model"] == "dev-audiogen-tiny"
    # captions asked for beside the audio: a real SRT parser reads every spoken word back
    assert entries[2]["captions"] == "speech/02_bye_1.srt" and "captions" not in entries[0]
    subs = list(srt.parse((out / entries[2]["captions"]).read_text()))
    spoken = " ".join(s.content.replace("\n", " ") for s in subs).split()
    captioned = client.get(entries[2]["job_id"]).result
    assert captioned is not None and captioned.words is not None
    assert spoken == [w.text for w in captioned.words]
    assert spoken[:2] == ["Goodbye.", "See"] and len(subs) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["generated"] == 4 and summary["failures"] == []
    first_run_s = time.monotonic() - started

    before = newest_job(client)
    again = soundry_batch(server_url, tmp_path, str(batch), "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 generated, 4 skipped" in again.stdout
    assert newest_job(client) == before
    assert manifest(out) == entries
    print(f"batch of 4 took {first_run_s:.1f} s; re-run skipped all")


def test_invalid_example_fails_with_lines_before_anything_is_queued(
    client: SoundryClient, server_url: str, tmp_path: Path
) -> None:
    before = newest_job(client)
    run = soundry_batch(server_url, tmp_path, "prompts/invalid_example.yaml", "--out", str(tmp_path / "out"))
    assert run.returncode == 2, run.stdout + run.stderr
    for line, field in [
        (14, "promt"),
        (17, "duration_s"),
        (20, "model"),
        (23, "format"),
        (24, "name"),
        (29, "seeds"),
        (32, "text"),
    ]:
        assert f"prompts/invalid_example.yaml:{line}:5: {field}: " in run.stderr, run.stderr
    assert "7 errors; nothing was submitted." in run.stderr
    assert newest_job(client) == before
    assert not (tmp_path / "out").exists()


def test_path_escaping_template_is_refused(client: SoundryClient, server_url: str, tmp_path: Path) -> None:
    batch = tmp_path / "escape.jsonl"
    batch.write_text(
        '{"output": "../../escaped_{name}.{format}"}\n{"kind": "speech", "text": "never made", "name": "x"}\n'
    )
    before = newest_job(client)
    run = soundry_batch(server_url, tmp_path, str(batch), "--out", str(tmp_path / "a" / "b"))
    assert run.returncode == 2
    assert f"{batch}:1:2: output: " in run.stderr and "'..'" in run.stderr
    assert newest_job(client) == before
    assert not list(tmp_path.rglob("escaped_*"))


@pytest.mark.parametrize(
    "name", ["game_sfx_pack.yaml", "podcast_cues.csv", "narration.jsonl", "game_loops.yaml"]
)
def test_example_files_validate_against_the_server(server_url: str, tmp_path: Path, name: str) -> None:
    run = soundry_batch(server_url, tmp_path, f"prompts/{name}", "--validate-only")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "valid:" in run.stdout and "not reachable" not in run.stderr


def test_ctrl_c_leaves_a_consistent_folder_and_the_rerun_finishes(
    client: SoundryClient, server_url: str, tmp_path: Path
) -> None:
    lines = [json.dumps({"output": "{index:02d}.{format}", "defaults": {"kind": "speech"}})]
    lines += [json.dumps({"name": f"l{i}", "text": f"Line number {i} of the story."}) for i in range(8)]
    batch = tmp_path / "story.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    out = tmp_path / "story"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gen_server.cli",
            "batch",
            str(batch),
            "--server",
            server_url,
            "--out",
            str(out),
            "--concurrency",
            "1",
        ],
        cwd=ROOT,
        env=server_env(tmp_path / "cli-data", 1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("[1/8] ok"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    done = summary["counts"]["generated"]
    assert 1 <= done < 8 and summary["counts"]["not_run"] == 8 - done
    entries = manifest(out)
    assert len(entries) == done
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(e["file"] for e in entries)

    rerun = soundry_batch(server_url, tmp_path, str(batch), "--out", str(out))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{8 - done} generated, {done} skipped" in rerun.stdout
    assert len(manifest(out)) == 8


def test_api_batch_submit_status_and_zip(client: SoundryClient) -> None:
    data = (
        b'{"name": "api-e2e", "defaults": {"kind": "speech", "model": "piper-en_US-joe-medium"}}\n'
        b'{"name": "one", "text": "First line.", "captions": "vtt"}\n'
        b'{"name": "two", "text": "Second line.", "n": 2}\n'
    )
    batch = client.submit_batch(data, "lines.jsonl")
    assert batch.total == 3 and all(i.job_id for i in batch.items)
    deadline = time.monotonic() + 300
    while batch.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = client.batch(batch.id)
    assert batch.state == "succeeded", batch
    with zipfile.ZipFile(io.BytesIO(client.batch_archive(batch.id))) as zf:
        entries = [json.loads(x) for x in zf.read("api-e2e/manifest.jsonl").decode().splitlines()]
        assert [e["file"] for e in entries] == ["001_one_v1.wav", "002_two_v1.wav", "002_two_v2.wav"]
        for entry in entries:
            audio = zf.read(f"api-e2e/{entry['file']}")
            assert hashlib.sha256(audio).hexdigest() == entry["sha256"]
        assert entries[0]["captions"] == "001_one_v1.vtt"
        vtt = webvtt.from_buffer(io.StringIO(zf.read("api-e2e/001_one_v1.vtt").decode()))
        assert [c.text for c in vtt.captions] == ["First line."]

    before = newest_job(client)
    with pytest.raises(BatchRejected) as info:
        client.submit_batch((ROOT / "prompts" / "invalid_example.yaml").read_bytes(), "invalid_example.yaml")
    assert info.value.status == 422
    assert [e["line"] for e in info.value.errors] == [14, 17, 20, 23, 24, 29, 32]
    assert newest_job(client) == before
