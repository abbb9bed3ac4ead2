"""``python -m llamaproc.build [--json] ...``: the same as ``python -m llamaproc build-config``.

Works from a source checkout before anything is built: ``PYTHONPATH=src python -m llamaproc.build``.
"""

import sys

from .cli import main

sys.exit(main(prog="python -m llamaproc.build"))
