"""Benchmarks (``lngate bench``): measured apart from the tests, printed as a table."""

from lngate.bench.runner import run_benchmarks

__all__ = ["run_benchmarks"]
