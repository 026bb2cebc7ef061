"""tfprune.callbacks."""
