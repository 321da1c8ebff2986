"""Models speedlab has never seen, for the tests of `model=custom`: code outside the package, by import path."""
