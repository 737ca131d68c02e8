"""``python -m gaffer``: the gaffer command."""

import sys

from gaffer.cli.main import main

sys.exit(main())
