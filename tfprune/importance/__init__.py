"""tfprune.importance."""
