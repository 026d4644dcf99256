"""`python -m pyexchange` runs the command line."""

import sys

from pyexchange.cli import main

sys.exit(main())
