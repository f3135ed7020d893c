"""eucalypt.cli."""
