"""`python -m gatekeeper` runs the command line."""

from __future__ import annotations

import sys

from gatekeeper.cli import main

sys.exit(main())
