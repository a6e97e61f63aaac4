"""`python -m runner.report ...` from the repository root: the same as `rainbow-report`."""

import sys

from rainbow_runner.runner.reporting.report import main

if __name__ == "__main__":
    sys.exit(main())
