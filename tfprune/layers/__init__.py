"""tfprune.layers."""
