"""``python -m ncrefs``: the ncrefs command line."""

import sys

import ncrefs  # noqa: F401 - binds the core package before the CLI imports it
from shared.cli import main

sys.exit(main())
