"""Parity runs: two training variants on identical batches, step by step (`python -m speedlab parity`)."""
