"""Helpers for tests, importable by third-party test suites too (no pytest import here)."""
