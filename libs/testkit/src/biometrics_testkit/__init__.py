"""Helpers for tests, the demo and the benchmark. Never installed in the stage images."""
