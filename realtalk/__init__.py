"""realtalk package."""
