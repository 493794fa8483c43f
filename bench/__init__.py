"""Benchmarks (`python bench/<name>.py`)."""
