"""Benchmarks of bnb: see benchmarks/README.md."""
