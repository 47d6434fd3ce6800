# Sourced by scripts/serve and scripts/test: make sure uv exists, then sync the locked environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    echo "soundry: installing uv (pip --user)" >&2
    python3 -m pip install --quiet --user "uv==0.13.8" || python3 -m pip install --quiet "uv==0.13.8"
fi
uv sync --frozen --quiet --compile-bytecode
# scripts/test only: browser tests drive Debian's Chromium (never a downloaded browser). Install it
# where we can (root with apt-get); elsewhere they skip and say why. SOUNDRY_BROWSER_TESTS=0 opts out.
if [ "$(basename "$0")" = test ] && [ "${SOUNDRY_BROWSER_TESTS:-1}" = 1 ] && [ ! -x /usr/bin/chromium ] \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "soundry: installing Debian's chromium for the browser tests (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/dev/null || echo "soundry: chromium install failed; browser tests will be skipped" >&2
fi
