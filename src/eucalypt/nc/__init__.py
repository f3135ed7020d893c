"""eucalypt.nc."""
