"""``python -m xlmr ...`` is the ``xlmr`` command."""

import sys

from xlmr.cli.main import main

sys.exit(main())
