#!/usr/bin/env bash
# GPU decoding benchmark (benchmarks/gpu.py): under 10 minutes on one GPU, table in benchmarks/results/.
#
#   benchmarks/gpu.sh                 # on a GPU host with the project installed (uv sync) or a CUDA image
#   benchmarks/gpu.sh --dry-run       # the same code on the tiny model on CPU, seconds (CI runs this)
#   benchmarks/gpu.sh --pack          # here: copy audiocraft and its pure-Python dependencies from .venv
#                                     # into .gpu/site, for a bare CUDA image that has torch but cannot
#                                     # install packages (carry .gpu along; gpu_env.py covers the rest)
# Other arguments go to benchmarks/gpu.py (--models, --batches, --seconds, --out DIR, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="audiocraft omegaconf antlr4 hydra julius num2words docopt.py flashy dora treetable submitit
  retrying.py colorlog dotenv catalogue platformdirs pooch librosa decorator"

if [ "${1:-}" = "--pack" ]; then
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf .gpu/site && mkdir -p .gpu/site
    for name in $PACKAGES; do
        if [ -e "$site/$name" ]; then cp -r "$site/$name" .gpu/site/; else echo "not in .venv: $name" >&2; fi
    done
    find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
    du -sh .gpu/site
    exit 0
fi

if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
else
    python=python3
    if [ -d .gpu/site ]; then export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"; fi
fi
PYTHONUNBUFFERED=1 exec "$python" -m benchmarks.gpu "$@"
