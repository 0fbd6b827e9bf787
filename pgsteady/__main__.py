"""``python -m pgsteady ...`` runs the pgsteady CLI."""

import sys

from pgsteady.cli import main

sys.exit(main())
