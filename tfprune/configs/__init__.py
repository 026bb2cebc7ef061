"""tfprune.configs."""
