"""obs package."""
