"""Command-line entry points: each module has `main()` (console scripts ecgan-*, launch/*.py)."""
