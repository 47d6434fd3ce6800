"""No secrets in logs or stored state: API keys, the webhook secret and the watermark key stay out.

A server of its own runs with a webhook secret from the environment and a watermark key it generates
in its data folder, serves an authenticated job with a signed webhook, refuses a wrong key, and then
every byte it wrote (its log, the job records and queue messages in Redis' append-only file,
artifacts, the key file; not the secrets folder, where the generated key lives) is searched for each
secret.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from gen_server.client import SoundryClient
from gen_server.instance_secrets import new_webhook_secret
from tests.e2e.test_webhooks import Receiver
from tests.helpers import ROOT, running_server, server_env

pytestmark = pytest.mark.e2e


def create_key(data_dir: Path, name: str) -> str:
    """``soundry keys create --name NAME``; returns the secret it prints once."""
    run = subprocess.run(
        [sys.executable, "-m", "gen_server.cli", "keys", "create", "--name", name],
        env=server_env(data_dir, 0),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return run.stdout.strip().splitlines()[-1]


def files_containing(root: Path, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in written_files(root) if needle in p.read_bytes())


def written_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "secrets"]


def test_secrets_never_reach_logs_or_stored_state(tmp_path: Path) -> None:
    webhook_secret = new_webhook_secret()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    api_key = create_key(data_dir, "secrets-test")
    receiver = Receiver()
    try:
        with running_server(
            data_dir,
            SOUNDRY_WEBHOOK_SECRET=webhook_secret,
            SOUNDRY_ALLOW_PRIVATE_WEBHOOKS="1",
        ) as url:
            wrong = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {api_key}x"})
            assert wrong.status_code == 401
            assert api_key not in wrong.text
            client = SoundryClient(url, api_key=api_key, timeout_s=60)
            job = client.submit({"kind": "speech", "text": "Keep it secret.", "callback_url": receiver.url})
            assert client.wait(job.id, timeout_s=300).state == "succeeded"
            receiver.wait(1)
            assert client.audio(job.id, "mp3")
            client.close()
    finally:
        receiver.server.shutdown()
    headers, body = receiver.calls[0]
    Webhook(webhook_secret).verify(body, headers)  # the environment's secret was used
    watermark_key = (data_dir / "secrets" / "watermark.key").read_text().strip()  # generated at start
    assert not (data_dir / "secrets" / "webhook.secret").exists()

    written = sorted(str(p.relative_to(data_dir)) for p in written_files(data_dir))
    assert "serve.log" in written and any(name.endswith(".aof") or "appendonly" in name for name in written)
    searched = {"API key": api_key, "webhook secret": webhook_secret, "watermark key": watermark_key}
    for name, value in searched.items():
        leaks = files_containing(data_dir, value.encode())
        assert not leaks, f"the {name} was written to {leaks}"
    print(f"\nsecrets: 3 searched for in {len(written)} files the server wrote; found in none")
