"""tfprune.models."""
