"""``python -m flowsim``: the same entry point as the ``flowsim`` console script."""

import sys

from flowsim.cli import main

sys.exit(main())
