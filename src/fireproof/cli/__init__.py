"""Command-line interface: one module per command group; exit codes live only here."""
