"""Benchmarks behind ``rlrm bench``: each prints a table and writes a JSON file."""
