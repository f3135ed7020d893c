"""eucalypt.cc."""
