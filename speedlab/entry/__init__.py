"""One `python -m` module per Hydra-driven command (`python -m speedlab.entry.train ...`), which the dispatcher
(`speedlab/__main__.py`) execs: each is a plain Hydra application whose `sys.argv` is what the user typed after the
command. Nothing imports these modules; they import the commands."""
