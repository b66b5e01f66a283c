"""``python -m sls_envelope``: the same as the ``sls-envelope`` command."""

import sys

from .cli import main

sys.exit(main())
