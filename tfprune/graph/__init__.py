"""tfprune.graph."""
