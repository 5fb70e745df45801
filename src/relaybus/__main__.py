import sys

from relaybus.cli import main

sys.exit(main())
