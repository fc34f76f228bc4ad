"""``python -m genguard.cli``."""

import sys

from genguard.cli import main

sys.exit(main())
