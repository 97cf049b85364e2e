"""Benchmark of the real service against a floor Flask app under the same gunicorn settings.

Run from the repository root: ``python -m bench --help``. Not part of the test suite; see
docs/benchmark.md.
"""
