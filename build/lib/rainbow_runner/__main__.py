"""`python -m rainbow_runner key=value ...`: the same entry point as `rainbow-runner`."""

from rainbow_runner.runner.cli import main

if __name__ == "__main__":
    main()
