"""`python -m speedlab bench`: the bench command as a Hydra application."""

import sys

from speedlab import cli
from speedlab.bench import command as command


def main() -> int:
    return cli.entry("bench", command.run)


if __name__ == "__main__":
    sys.exit(main())
