"""``python -m cosmo_sbi``: the same as the ``cosmo-sbi`` command."""

import sys

from cosmo_sbi.cli import main

sys.exit(main())
