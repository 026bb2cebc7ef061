"""tfprune.data."""
