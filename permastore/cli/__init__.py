"""The `permastore` command line."""
