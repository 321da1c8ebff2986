"""speedlab: what each PyTorch speed lever buys on your model and hardware, and whether it broke accuracy."""

__version__ = "0.1.0"
