"""Command-line interface: ``mambairv2 <command> ...``."""
