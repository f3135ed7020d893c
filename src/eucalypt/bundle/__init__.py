"""eucalypt.bundle."""
