"""`python -m speedlab profile`: the profile command as a Hydra application."""

import sys

from speedlab import cli
from speedlab import profiling as command


def main() -> int:
    return cli.entry("profile", command.run)


if __name__ == "__main__":
    sys.exit(main())
