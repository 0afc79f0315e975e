"""`python -m danlab ...` is the `danlab` command."""

import sys

from danlab.cli import main

sys.exit(main())
