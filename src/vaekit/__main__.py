"""`python -m vaekit` runs the command-line tool."""

import sys

from vaekit.cli import main

sys.exit(main())
