"""The job measured against references in the same run: ``python -m benchmarks`` builds
the inputs, runs every row,
prints the table. See benchmarks/README.md.
"""
