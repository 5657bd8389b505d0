"""The transform stage."""
