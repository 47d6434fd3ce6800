"""The ``soundry`` command (also ``python -m gen_server.cli``): one module per command group.

    soundry serve      API + UI, an embedded Redis and a worker, stopped together (serve.py)
    soundry worker     one worker process against SOUNDRY_REDIS_URL (serve.py)
    soundry models     list the catalog with licences; pull a model's weights (models.py)
    soundry keys       create, list or revoke API keys (keys.py)
    soundry status     queues, workers and job totals of a running deployment (status.py)
    soundry verify     detect Soundry's watermark and check the C2PA credentials of an audio file (verify.py)
    soundry batch      generate a batch file (YAML, JSONL, CSV) into a folder with a manifest (batch.py)
    soundry scene      render a scene file into one mixed track (scene.py)
    soundry audit      print the voice audit log (voices.py)
    soundry voices     protected voices, never cloned: protect FILE --name, protected (voices.py)

Every command is ``cmd_*(args, settings) -> exit code``; :func:`build_parser` wires them to their
arguments and :func:`main` runs one with the checked settings. Command modules import what they need
when they run, so the parser starts fast and never imports torch.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from gen_server.cli.batch import cmd_batch
from gen_server.cli.keys import cmd_keys
from gen_server.cli.models import cmd_models_list, cmd_models_pull
from gen_server.cli.scene import cmd_scene
from gen_server.cli.serve import cmd_serve, cmd_worker
from gen_server.cli.status import cmd_status
from gen_server.cli.verify import cmd_verify
from gen_server.cli.voices import add_parsers as add_voice_parsers
from gen_server.settings import Settings, checked_settings

Command = Callable[[argparse.Namespace, Settings], int]

API_KEY_HELP = (
    "API key, when the server requires one (default: SOUNDRY_API_KEY); prefer the variable: a key on "
    "the command line is visible to other users of this machine in `ps`"
)


def build_parser() -> argparse.ArgumentParser:
    """Every command with its arguments; ``func`` is the ``cmd_*`` that runs it."""
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
    mlist.add_argument(
        "--commercial", action="store_true", help="only models whose outputs may be used commercially"
    )
    mlist.set_defaults(func=cmd_models_list)
    pull = models.add_parser("pull", help="download a model's weights into the local cache")
    pull.add_argument("model_id")
    pull.set_defaults(func=cmd_models_pull)
    verify = sub.add_parser("verify", help="detect Soundry's watermark and check a file's C2PA credentials")
    verify.add_argument("file")
    verify.add_argument("--json", action="store_true")
    verify.add_argument(
        "--job",
        metavar="JOB_ID",
        help="check FILE against this job's mark (finds marks too weak to find otherwise)",
    )
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
        "--bundle",
        metavar="FILE",
        help="also save the scene's export as a zip (mix, one stem per track, captions, timeline.otio, "
        "project.rpp); asks for it with export: true when the file does not",
    )
    scene.add_argument(
        "--new", action="store_true", help="render again even if this file was rendered before"
    )
    scene.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait (default 1800)")
    scene.set_defaults(func=cmd_scene)
    add_voice_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv``); its exit code, 130 after Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args, checked_settings())
    except KeyboardInterrupt:
        return 130
