"""eucalypt.net."""
