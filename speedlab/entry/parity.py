"""`python -m speedlab parity`: the parity command as a Hydra application. Hydra's argv holds the shared overrides
and flags; each side's overrides arrive in the environment (`speedlab.parity.argv.SIDES_ENV`, set by the
dispatcher), and both sides are composed before any run starts."""

import json
import os
import sys
from functools import partial

from speedlab import cli
from speedlab.errors import SpeedlabError
from speedlab.parity import command
from speedlab.parity.argv import SIDES_ENV


def main() -> int:
    side_a, side_b = json.loads(os.environ.get(SIDES_ENV, "[[], []]"))
    args = cli.parse(sys.argv[1:])
    if not cli.prints_only(args):
        try:
            for label, own in (("A", side_a), ("B", side_b)):  # a bad side override fails before any training
                command.compose_side(label, args.overrides, own)
        except SpeedlabError as err:
            print(f"speedlab: error: {err}", file=sys.stderr)
            return 1
    return cli.entry("parity", partial(command.run, sides=(side_a, side_b)))


if __name__ == "__main__":
    sys.exit(main())
