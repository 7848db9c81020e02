"""Test doubles for graphtune's tests and benchmarks (no real services needed)."""
