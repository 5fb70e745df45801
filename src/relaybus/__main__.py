"""``python -m relaybus``: the command line, as the ``relaybus`` script runs it."""

import sys

from relaybus.cli import main

sys.exit(main())
