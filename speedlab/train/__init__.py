"""Training: the `train` command (`command.py`), the public trainer builder (`builder.py`, also used by profile),
the loop, the speed levers, tasks (loss and metrics), DDP, progress output and the summary table."""

from speedlab.callable import forward

forward(__name__, "speedlab.api:train")  # `speedlab.train(...)` is the Python API (docs/python-api.md)
