"""Reports: the `report` command (`command.py`) and its plots (`plots.py`)."""
