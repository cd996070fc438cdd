"""echobench's driver: runs the backend matrix, writes Google Benchmark JSON, reports, compares.

The command is scripts/echobench; the pieces live here, one concern per module.
"""
