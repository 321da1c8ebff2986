"""Datasets and input pipelines. Kept import-light: cache-building worker processes import `decode` alone.

Entry point for the rest of speedlab: `speedlab.data.build.build_data`.
"""
