"""Test support that must be importable by the engine process itself (the TypeScript tests
start it): fault injection (faults.py). Nothing in the serving path imports it."""
