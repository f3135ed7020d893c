"""eucalypt.clc."""
