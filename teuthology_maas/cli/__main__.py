"""`python -m teuthology_maas.cli`: the same as the `teuthology-maas` command."""

import sys

from teuthology_maas.cli import main

sys.exit(main())
