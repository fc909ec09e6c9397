"""Command-line entry points: the main() of each command (console scripts ecgan-train, ...,
and the two-line wrappers in launch/)."""
