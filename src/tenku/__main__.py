"""``python -m tenku`` runs the ``tenku`` command."""

import sys

from tenku.cli import main

sys.exit(main())
