"""tfprune.bin."""
