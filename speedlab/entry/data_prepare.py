"""`python -m speedlab data prepare`: building a source's decoded cache, as a Hydra application."""

import sys

from speedlab import cli
from speedlab.data import cli as data_cli


def main() -> int:
    return cli.entry("data_prepare", data_cli.prepare)


if __name__ == "__main__":
    sys.exit(main())
