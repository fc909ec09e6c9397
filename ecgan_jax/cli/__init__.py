"""Command-line entry points: the main() of each command (console scripts ecgan-train, ...)."""
