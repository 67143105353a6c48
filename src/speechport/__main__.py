"""``python -m speechport``: the command line."""

import sys

from speechport.cli import main

sys.exit(main())
