"""``python -m ui [API_URL]``: the UI alone, against a running API."""

import sys

from gen_server.client import SoundryClient
from ui.app import build_ui

if __name__ == "__main__":
    api = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    build_ui(SoundryClient(api), api_base=api).launch()
