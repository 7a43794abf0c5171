"""Command-line interface: ``mimic3d <command> --help``."""
