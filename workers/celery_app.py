"""The worker-side Celery app (``celery -A workers.celery_app worker`` also works)."""

from __future__ import annotations

from celery import Celery

from gen_server.celery_config import celery_config
from gen_server.settings import get_settings


def make_app() -> Celery:
    settings = get_settings()
    if not settings.redis_url:
        raise SystemExit("a worker needs SOUNDRY_REDIS_URL (the serve command passes its embedded Redis)")
    app = Celery("soundry")
    app.conf.update(celery_config(settings, settings.redis_url))
    app.conf.update(
        include=["workers.tasks", "workers.webhook_tasks", "workers.scene_tasks", "workers.voice_tasks"]
    )
    return app


app = make_app()
