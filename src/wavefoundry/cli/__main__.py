"""`python -m wavefoundry.cli` (torchrun runs the CLI this way)."""

import sys

from wavefoundry.cli import main

sys.exit(main())
