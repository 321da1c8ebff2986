"""`python -m speedlab train`: the train command as a Hydra application; a sweep ends with one summary table."""

import sys

from speedlab import cli
from speedlab.train import command


def main() -> int:
    command.finished_rows.clear()
    code = cli.entry("train", command.run)
    command.print_sweep_summary()
    return code


if __name__ == "__main__":
    sys.exit(main())
