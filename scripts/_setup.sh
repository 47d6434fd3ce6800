# Sourced by scripts/serve and scripts/test: make sure uv exists, then sync the locked environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    echo "soundry: installing uv (pip --user)" >&2
    python3 -m pip install --quiet --user "uv==0.13.8" || python3 -m pip install --quiet "uv==0.13.8"
fi
uv sync --frozen --quiet
