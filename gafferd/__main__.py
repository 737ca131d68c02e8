"""``python -m gafferd``."""

import sys

from gafferd.main import main

sys.exit(main())
