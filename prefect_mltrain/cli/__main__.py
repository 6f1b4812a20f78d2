"""`python -m prefect_mltrain.cli`, as `job run --detach` starts it."""

import sys

from prefect_mltrain.cli import main

sys.exit(main())
