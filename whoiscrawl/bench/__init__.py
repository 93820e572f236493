"""Benchmarks that print JSON: fleet crawls and chaos, one-process crawls and parsers, refresh, export,
serving, and the simulator itself; each measured beside a baseline of the same run."""
