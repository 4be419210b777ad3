"""Benchmarks of qrhead-integrations (run from the repository root: python -m benchmarks.speed_memory)."""
