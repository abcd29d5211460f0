"""The drawings people correct: an SQLite store, the correction entry point, and its limits."""
