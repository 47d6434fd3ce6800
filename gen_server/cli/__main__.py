"""``python -m gen_server.cli``: the same as the ``soundry`` command."""

import sys

from gen_server.cli import main

sys.exit(main())
