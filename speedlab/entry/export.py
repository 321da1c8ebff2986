"""`python -m speedlab export`: the export command as a Hydra application."""

import sys

from speedlab import cli
from speedlab.export import command as command


def main() -> int:
    return cli.entry("export", command.run)


if __name__ == "__main__":
    sys.exit(main())
