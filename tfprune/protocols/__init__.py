"""tfprune.protocols."""
