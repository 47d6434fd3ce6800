"""Secrets per installation: generated once into the data folder (0600), reused, never shared between
installations, safe when processes start together; env values win; a public bind with a built-in
default secret is refused; the CLI client's API key comes from SOUNDRY_API_KEY."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from gen_server.auth import KeyStore, keys_path
from gen_server.instance_secrets import (
    BUILTIN_DEFAULTS,
    SecretsError,
    builtin_defaults_in_use,
    new_webhook_secret,
    resolve,
    secrets_dir,
)
from gen_server.settings import Settings
from tests.helpers import ROOT, server_env

RESOLVE = (
    "import json; from gen_server.instance_secrets import resolve; from gen_server.settings import Settings; "
    "s = resolve(Settings()); print(json.dumps([s.watermark_key, s.webhook_secret]))"
)


def resolve_in_new_process(data_dir: Path, **env: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", RESOLVE],
        env=server_env(data_dir, 0, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    values: list[str] = json.loads(run.stdout.strip().splitlines()[-1])
    assert not any(v in run.stderr for v in values)  # logged where they are, never what they are
    return values


def test_fresh_data_folder_gets_secrets_kept_0600_and_reused(tmp_path: Path) -> None:
    first = resolve(Settings(data_dir=tmp_path / "a"))
    folder = secrets_dir(Settings(data_dir=tmp_path / "a"))
    files = {p.name: p for p in folder.iterdir()}
    assert sorted(files) == ["watermark.key", "webhook.secret"]  # no temporary files left behind
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert files["watermark.key"].read_text().strip() == first.watermark_key
    assert files["webhook.secret"].read_text().strip() == first.webhook_secret
    assert "generated now" in first.watermark_key_source
    assert first.webhook_secret.startswith("whsec_") and len(first.watermark_key) >= 40
    Webhook(first.webhook_secret)  # a Standard Webhooks library takes it

    again = resolve_in_new_process(tmp_path / "a")  # the next start
    assert again == [first.watermark_key, first.webhook_secret]
    other = resolve_in_new_process(tmp_path / "b")  # another installation
    assert other[0] != first.watermark_key and other[1] != first.webhook_secret


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", 0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESOLVE], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    # six interpreters starting at once: minutes on a busy single core is still a pass
    outputs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(o == outputs[0] for o in outputs)
    assert sorted(p.name for p in (tmp_path / "data" / "secrets").iterdir()) == [
        "watermark.key",
        "webhook.secret",
    ]


def test_threads_racing_in_one_process_agree(tmp_path: Path) -> None:
    results: list[tuple[str, str]] = []
    settings = [Settings(data_dir=tmp_path / "data", watermark_key=f"k{i}") for i in range(8)]

    def run(s: Settings) -> None:
        r = resolve(s)
        results.append((r.watermark_key, r.webhook_secret))

    threads = [threading.Thread(target=run, args=(s,)) for s in settings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({webhook for _, webhook in results}) == 1
    assert sorted(key for key, _ in results) == sorted(f"k{i}" for i in range(8))


def test_environment_values_win_and_are_checked(tmp_path: Path) -> None:
    secret = new_webhook_secret()
    got = resolve(Settings(data_dir=tmp_path, watermark_key="my-key", webhook_secret=secret))
    assert (got.watermark_key, got.webhook_secret) == ("my-key", secret)
    assert got.watermark_key_source == "SOUNDRY_WATERMARK_KEY"
    assert not (tmp_path / "secrets").exists()
    for bad in ("not-a-secret", "whsec_", "whsec_" + "A" * 8, BUILTIN_DEFAULTS["SOUNDRY_WEBHOOK_SECRET"]):
        with pytest.raises(SecretsError, match="SOUNDRY_WEBHOOK_SECRET must be a Standard Webhooks secret"):
            resolve(Settings(data_dir=tmp_path, webhook_secret=bad))
    defaults = Settings(
        data_dir=tmp_path, **{k.removeprefix("SOUNDRY_").lower(): v for k, v in BUILTIN_DEFAULTS.items()}
    )
    assert builtin_defaults_in_use(defaults) == ["SOUNDRY_WATERMARK_KEY", "SOUNDRY_WEBHOOK_SECRET"]
    assert builtin_defaults_in_use(Settings(data_dir=tmp_path)) == []


def serve(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = server_env(data_dir, 0, **env)
    environment["SOUNDRY_HOST"] = "0.0.0.0"
    return subprocess.run(
        [sys.executable, "-m", "gen_server.cli", "serve", "--no-worker", "--no-ui"],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("variable", sorted(BUILTIN_DEFAULTS))
def test_public_bind_with_a_builtin_default_secret_is_refused(tmp_path: Path, variable: str) -> None:
    KeyStore(keys_path(tmp_path)).create("ops")
    run = serve(tmp_path, **{variable: BUILTIN_DEFAULTS[variable]})
    assert run.returncode == 2, run.stderr
    assert "refusing to listen on 0.0.0.0" in run.stderr
    assert f"{variable} is set to the built-in default" in run.stderr
    assert "API keys" not in run.stderr  # there is one
    assert not (tmp_path / "redis").exists()  # refused before anything started


def test_public_bind_without_keys_names_every_problem(tmp_path: Path) -> None:
    run = serve(tmp_path, SOUNDRY_WATERMARK_KEY=BUILTIN_DEFAULTS["SOUNDRY_WATERMARK_KEY"])
    assert run.returncode == 2
    assert "without API keys" in run.stderr
    assert "SOUNDRY_WATERMARK_KEY is set to the built-in default" in run.stderr


class AuthRecorder:
    """An HTTP server that records every request's Authorization header and answers 401."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                recorder.authorizations.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"error": {"code": "unauthorized", "message": "bad key", "field": null}}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[AuthRecorder]:
    r = AuthRecorder()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.mark.parametrize(
    "command", [["batch", "prompts/game_sfx_pack.yaml"], ["scene", "prompts/scenes/podcast_intro.yaml"]]
)
def test_soundry_api_key_reaches_the_cli_client(
    tmp_path: Path, recorder: AuthRecorder, command: list[str]
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gen_server.cli",
            *command,
            "--server",
            recorder.url,
            "--out",
            str(tmp_path / "o"),
        ],
        env=server_env(tmp_path / "data", 0, SOUNDRY_API_KEY="sk-soundry-from-env"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0  # the recorder refuses every request
    assert recorder.authorizations, run.stderr
    assert set(recorder.authorizations) == {"Bearer sk-soundry-from-env"}
    assert "sk-soundry-from-env" not in run.stdout + run.stderr


def test_api_key_help_warns_about_ps() -> None:
    from gen_server.cli import build_parser

    for command in ("batch", "scene"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        text = sub.format_help()
        assert "SOUNDRY_API_KEY" in text and "ps" in text
