"""`python -m wsrl ...`: the command line (what `wsrl sweep` runs on every node, with that node's Python)."""

import sys

from wsrl.cli import main

sys.exit(main())
