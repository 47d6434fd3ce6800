"""The ``soundry`` command: serve, worker, models."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gen_server.settings import Settings, checked_settings, child_env

if TYPE_CHECKING:
    from gen_server.storage import ArtifactStore

logger = logging.getLogger("soundry")

Command = Callable[[argparse.Namespace, Settings], int]

API_KEY_HELP = (
    "API key, when the server requires one (default: SOUNDRY_API_KEY); prefer the variable: a key on "
    "the command line is visible to other users of this machine in `ps`"
)


def start_retention_sweeper(store: ArtifactStore, retention_s: float, every_s: float = 3600.0) -> None:
    """Delete artifacts older than ``retention_s`` now and then every hour (daemon thread).

    A failed sweep (storage unreachable) is logged and tried again at the next round.
    """
    import threading

    from gen_server.errors import SoundryError

    def sweep() -> None:
        while True:
            try:
                removed = store.sweep(retention_s)
            except SoundryError as e:
                logger.warning("retention: sweep failed, trying again in %.0f s: %s", every_s, e.message)
            else:
                if removed:
                    logger.info("retention: removed %d expired artifact folders", removed)
            time.sleep(every_s)

    threading.Thread(target=sweep, name="retention-sweeper", daemon=True).start()


def checked_store(settings: Settings) -> ArtifactStore | None:
    """The configured store, or ``None`` after printing why it is unusable (bad URL, no bucket, ...)."""
    from gen_server.errors import StorageError
    from gen_server.storage import open_store

    try:
        store = open_store(settings)
        store.check()
        return store
    except StorageError as e:
        print(f"soundry: {e.message}", file=sys.stderr)
        return None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """API + UI + (embedded Redis and one worker unless told otherwise), stopped together by Ctrl-C."""
    import uvicorn

    from gen_server.auth import KeyStore, keys_path
    from gen_server.instance_secrets import builtin_defaults_in_use, checked_secrets
    from gen_server.main import create_app
    from gen_server.redis_server import EmbeddedRedis
    from gen_server.supervisor import Supervisor

    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        problems = [
            f"while {name} is set to the built-in default, which is public (unset it to have a secret "
            "generated in the data folder, or set your own)"
            for name in builtin_defaults_in_use(settings)
        ]
        if not KeyStore(keys_path(settings.data_dir)).enabled:
            problems.insert(0, "without API keys; create one with `soundry keys create --name NAME`")
        if problems:
            print(
                f"soundry: refusing to listen on {settings.host} "
                + ", and ".join(problems)
                + " (or keep SOUNDRY_HOST=127.0.0.1)",
                file=sys.stderr,
            )
            return 2
    store = checked_store(settings)
    if store is None:
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    checked_secrets(settings)  # generated on first start, before the worker starts; logged once
    embedded: EmbeddedRedis | None = None
    worker: Supervisor | None = None
    url = settings.redis_url
    try:
        if url is None:
            embedded = EmbeddedRedis(settings.data_dir / "redis").start()
            url = embedded.url
        if not args.no_worker:
            worker = Supervisor(
                [sys.executable, "-m", "workers", "--queues", settings.queues],
                env=child_env({"SOUNDRY_REDIS_URL": url}),
            ).start()
        start_retention_sweeper(store, settings.job_retention_s)
        app = create_app(settings, redis_url=url, ui=not args.no_ui)
        logger.info("Soundry on http://%s:%d (UI at /ui, API docs at /docs)", settings.host, settings.port)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        if worker is not None:
            worker.stop()
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """One worker process (a separate interpreter: the API side never imports the workers)."""
    from gen_server.redis_server import embedded_url

    if checked_store(settings) is None:
        return 2
    url = settings.redis_url or embedded_url(settings.data_dir / "redis")
    if url is None:
        print(
            "soundry: set SOUNDRY_REDIS_URL (no embedded Redis is running on this data folder)",
            file=sys.stderr,
        )
        return 2
    argv = [sys.executable, "-m", "workers"]
    if args.queues:
        argv += ["--queues", args.queues]
    if args.device:
        argv += ["--device", args.device]
    return subprocess.call(argv, env=child_env({"SOUNDRY_REDIS_URL": url}))


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from gen_server.contract.catalog import build_catalog

    entries = list(build_catalog(settings))
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return 0
    print(f"{'id':28} {'kind':7} {'rate':>6} {'max s':>6}  licence")
    for e in entries:
        flag = "" if e.commercial_use else "  [non-commercial]"
        print(f"{e.id:28} {e.kind:7} {e.sample_rate:>6} {e.max_duration_s:>6.0f}  {e.licence}{flag}")
    return 0


def cmd_models_pull(args: argparse.Namespace, settings: Settings) -> int:
    """Download a catalog model into the local cache (needs internet) and verify it loads."""
    return subprocess.call([sys.executable, "-m", "workers.pull", args.model_id], env=child_env({}))


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or revoke API keys (stored hashed in the data folder)."""
    from gen_server.auth import KeyStore, keys_path

    store = KeyStore(keys_path(settings.data_dir))
    if args.keys_cmd == "create":
        secret, record = store.create(
            args.name, admin=args.admin, rate_per_min=args.rate, max_concurrent_jobs=args.max_jobs
        )
        print(f"created key {record.id} ({record.name}{', admin' if record.admin else ''}); shown once:")
        print(secret)
    elif args.keys_cmd == "list":
        for k in store.all():
            print(
                f"{k.id}  {k.name:20} admin={k.admin} rate={k.rate_per_min}/min jobs={k.max_concurrent_jobs}"
            )
    elif args.keys_cmd == "revoke":
        if not store.revoke(args.key_id):
            print(f"soundry: no key with id {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Generate every item of a batch file (YAML, JSONL, CSV) into a folder with a manifest."""
    from pathlib import Path

    from gen_server.batch_runner import run_batch

    return run_batch(
        Path(args.file),
        settings=settings,
        server=args.server,
        out_dir=Path(args.out) if args.out else None,
        concurrency=args.concurrency,
        api_key=args.api_key or settings.api_key,
        validate_only=args.validate_only,
        job_timeout_s=args.job_timeout,
    )


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Queue depths, live workers (memory, loaded models) and job totals from the shared Redis."""
    import time

    import redis

    from gen_server.metrics import hash_text, live_workers, queue_depths
    from gen_server.records import keys
    from gen_server.redis_server import embedded_url
    from gen_server.storage import storage_location

    url = args.redis_url or settings.redis_url or embedded_url(settings.data_dir / "redis")
    if url is None:
        print("soundry: set SOUNDRY_REDIS_URL (or --redis-url) to the server's Redis", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        depths = queue_depths(client)
        workers = live_workers(client)
        totals = hash_text(client, keys.STATS_JOBS)
    except redis.ConnectionError as e:
        print(f"soundry: cannot reach Redis at {url}: {e}", file=sys.stderr)
        return 1
    here = storage_location(settings)
    print("queues:  " + "  ".join(f"{q}={n}" for q, n in depths.items()))
    print(f"storage: {here}")
    print(f"workers: {len(workers)}")
    for name, info in sorted(workers.items()):
        age = time.time() - float(info["seen_at"])
        rss_mb = int(info.get("rss_bytes", 0)) / 2**20
        models = ", ".join(info.get("models", [])) or "none"
        print(f"  {name}: queues {info['queues']}, {rss_mb:.0f} MiB, models: {models} (seen {age:.0f} s ago)")
        storage = info.get("storage")
        if storage and storage != here:  # the classic scale-out mistake: writing where the API cannot read
            print(f"    storage {storage} (not this host's {here}: make it the same on every host)")
    print("jobs:    " + ("  ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "none finished yet"))
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Look for Soundry's watermark in FILE (with this installation's key); exit 0 when found."""
    from pathlib import Path

    from gen_server.errors import SoundryError
    from gen_server.instance_secrets import checked_secrets
    from gen_server.provenance import detect_bytes

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"soundry: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    store = checked_store(settings)
    if store is None:
        return 2
    try:
        found = detect_bytes(data, checked_secrets(settings).watermark_key, store)
    except SoundryError as e:
        print(f"soundry: {path}: {e.message}", file=sys.stderr)
        return 2
    d = found.detection
    if args.json:
        payload = f"{d.payload:08x}" if d.payload is not None else None
        print(
            json.dumps(
                {
                    "file": str(path),
                    "detected": d.detected,
                    "confidence": round(d.confidence, 3),
                    "payload": payload,
                    "job_id": found.job_id,
                    "metadata_job_id": found.metadata_job_id,
                }
            )
        )
    elif d.detected:
        job = f", job {found.job_id}" if found.job_id else " (job not in this installation's storage)"
        print(f"{path}: Soundry watermark FOUND, payload {d.payload:08x}, confidence {d.confidence:.1f}{job}")
    else:
        print(f"{path}: no Soundry watermark found (confidence {d.confidence:.1f})")
    return 0 if d.detected else 1


def _scene_lines(text: str) -> dict[str, int]:
    """Line of each key and list item in a YAML/JSON scene file, by path (``tracks[1].items[0].gain_db``)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = f"{path}.{key_node.value}" if path else str(key_node.value)
                lines.setdefault(sub, key_node.start_mark.line + 1)
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                lines.setdefault(f"{path}[{i}]", child.start_mark.line + 1)
                walk(child, f"{path}[{i}]")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def cmd_scene(args: argparse.Namespace, settings: Settings) -> int:
    """Render a scene file (YAML or JSON) on a server into one mixed, normalised, watermarked file."""
    import hashlib
    import re
    import time
    from pathlib import Path

    import httpx
    import yaml

    from gen_server.batch_runner import default_server
    from gen_server.client import TERMINAL_STATES, ApiError, SoundryClient
    from gen_server.errors import InvalidInput
    from gen_server.files import atomic_write
    from gen_server.scene_plan import parse_scene

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        print(f"soundry: {path}: {e}", file=sys.stderr)
        return 2
    lines = _scene_lines(text)

    def where(field: str | None) -> str:
        key = field or ""
        while key and key not in lines:  # the nearest enclosing item or key that is in the file
            key = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
        return f"{path}:{lines[key]}" if key else str(path)

    try:
        parse_scene(data)
    except InvalidInput as e:
        print(f"{where(e.field)}: {e.message}", file=sys.stderr)
        return 2
    url = args.server or default_server(settings)
    client = SoundryClient(url, api_key=args.api_key or settings.api_key, timeout_s=60.0)
    # the same file sent again re-attaches to its scene (like `soundry batch`); --new renders it afresh
    key = None if args.new else "scene-file-" + hashlib.sha256(text.encode()).hexdigest()[:40]
    try:
        view = client.submit_scene(data, idempotency_key=key)
        if key is not None and view["state"] in ("failed", "cancelled"):
            print(f"scene {view['id']} (an earlier run) {view['state']}; rendering again", file=sys.stderr)
            view = client.submit_scene(data)
        scene_id = view["id"]
        print(f"scene {scene_id}: {len(view['components'])} components queued on {url}", file=sys.stderr)
        deadline, last = time.monotonic() + args.timeout, ""
        while view["state"] not in TERMINAL_STATES and time.monotonic() < deadline:
            time.sleep(0.5)
            view = client.scene(scene_id)
            done = sum(c["state"] == "succeeded" for c in view["components"])
            line = f"{view['state']}, {done}/{len(view['components'])} components done"
            if line != last:
                print(f"scene {scene_id}: {line} ({view['progress']:.0%})", file=sys.stderr)
                last = line
        if view["state"] != "succeeded":
            error = view.get("error") or {"message": f"still {view['state']} after {args.timeout:g} s"}
            print(f"soundry: scene {scene_id} {view['state']}: {error['message']}", file=sys.stderr)
            return 1
        fmt = view["result"]["format"]
        out = Path(args.out) if args.out else Path(f"{path.stem}.{fmt}")
        suffix = out.suffix.lower().lstrip(".")
        audio = client.audio(scene_id, suffix if suffix in ("wav", "flac", "mp3", "ogg") else fmt)
    except ApiError as e:
        if e.status == 422:
            print(f"{where(e.field)}: {e.message}", file=sys.stderr)
            return 2
        print(f"soundry: {url}: {e}", file=sys.stderr)
        return 1
    except httpx.HTTPError as e:
        print(f"soundry: cannot reach the Soundry server at {url}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    atomic_write(out, audio)
    atomic_write(out.with_name(out.stem + ".scene.json"), json.dumps(view, indent=2).encode())
    mix = view.get("mix") or {}
    print(
        f"{out}: {view['result']['duration_s']:.2f} s, {view['sample_rate']} Hz, {view['channels']} ch, "
        f"{mix.get('loudness_lufs', float('nan')):.2f} LUFS (target {view['target_lufs']:g}), true peak "
        f"{mix.get('true_peak_dbtp', float('nan')):.2f} dBTP, watermark {view['result']['watermark_payload']}"
    )
    print(f"scene {view['id']} (also the mixed track's job id); components:")
    for c in view["components"]:
        print(f"  {c['path']:20} {c['label'][:18]:18} {c['kind']:6} {c['model'][:26]:26} job {c['job_id']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soundry", description="Soundry generative audio server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API, UI, embedded Redis and a worker")
    serve.add_argument("--no-worker", action="store_true", help="start no worker (run them elsewhere)")
    serve.add_argument("--no-ui", action="store_true", help="API only")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run one worker process against SOUNDRY_REDIS_URL")
    worker.add_argument("--queues", help="comma-separated: speech,sfx,music")
    worker.add_argument("--device", help="cpu or cuda:N")
    worker.set_defaults(func=cmd_worker)
    models = sub.add_parser("models", help="the model catalog").add_subparsers(
        dest="models_cmd", required=True
    )
    mlist = models.add_parser("list", help="list models with licences")
    mlist.add_argument("--json", action="store_true")
    mlist.set_defaults(func=cmd_models_list)
    pull = models.add_parser("pull", help="download a model's weights into the local cache")
    pull.add_argument("model_id")
    pull.set_defaults(func=cmd_models_pull)
    verify = sub.add_parser("verify", help="detect Soundry's watermark in an audio file")
    verify.add_argument("file")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
    status = sub.add_parser("status", help="queues and workers of a running deployment")
    status.add_argument("--redis-url", help="default: SOUNDRY_REDIS_URL")
    status.set_defaults(func=cmd_status)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    create = keys.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--admin", action="store_true", help="may see every job")
    create.add_argument("--rate", type=int, default=120, help="requests per minute")
    create.add_argument("--max-jobs", type=int, default=20, help="queued or running jobs at once")
    keys.add_parser("list", help="list keys (ids and names; secrets are not stored)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    for p in keys.choices.values():
        p.set_defaults(func=cmd_keys)
    batch = sub.add_parser(
        "batch",
        help="generate a batch file (YAML, JSONL or CSV) into a folder with a manifest",
        description="Validate the whole file (nothing is queued when it has errors), then run its jobs "
        "through the server; re-running skips files already done. Exit codes: 0 done, 1 some jobs "
        "failed, 2 invalid file, 130 interrupted.",
    )
    batch.add_argument("file", help="batch file: .yaml/.yml, .jsonl or .csv (see prompts/)")
    batch.add_argument("--server", help="API base URL (default: http://SOUNDRY_HOST:SOUNDRY_PORT)")
    batch.add_argument("--out", help="output folder (default: ./<file stem>-batch)")
    batch.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once (default 4)")
    batch.add_argument("--api-key", help=API_KEY_HELP)
    batch.add_argument("--validate-only", action="store_true", help="check the file, submit nothing")
    batch.add_argument(
        "--job-timeout", type=float, default=1800.0, help="seconds to wait for one job (default 1800)"
    )
    batch.set_defaults(func=cmd_batch)
    scene = sub.add_parser(
        "scene",
        help="render a scene file (YAML/JSON timeline of speech, music, sfx) into one mixed track",
        description="Send a scene file to the server: its items are generated in parallel, then mixed, "
        "normalised to the scene's loudness target and watermarked. Writes the track and "
        "<out stem>.scene.json. The same file sent again re-attaches to its first render. Exit codes: 0 "
        "done, 1 the scene failed or the server is unreachable, 2 invalid file (file:line: message).",
    )
    scene.add_argument("file", help="scene file: .yaml/.yml or .json (see prompts/scenes/)")
    scene.add_argument("--server", help="API base URL (default: http://SOUNDRY_HOST:SOUNDRY_PORT)")
    scene.add_argument(
        "--out", help="output file (default: ./<file stem>.<format>); the suffix picks the format"
    )
    scene.add_argument("--api-key", help=API_KEY_HELP)
    scene.add_argument(
        "--new", action="store_true", help="render again even if this file was rendered before"
    )
    scene.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait (default 1800)")
    scene.set_defaults(func=cmd_scene)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args, checked_settings())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
