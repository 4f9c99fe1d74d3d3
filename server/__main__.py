"""`python -m careline.server` runs the `careline` command."""

import sys

from careline.server.cli import main

sys.exit(main())
