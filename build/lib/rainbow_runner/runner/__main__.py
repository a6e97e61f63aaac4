"""`python -m runner ...` from the repository root: the same entry point as `rainbow-runner`."""

from rainbow_runner.runner.cli import main

if __name__ == "__main__":
    main()
