"""`python -m shared.cli`: the `hookline` command without its console script."""

import sys

from shared.cli import main

sys.exit(main())
