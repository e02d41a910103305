"""Benchmarks of issue 4: ``python -m benchmarks`` builds the inputs, runs every row,
prints the table. See benchmarks/README.md.
"""
