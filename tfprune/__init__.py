"""tfprune: filter-level structured pruning and growing regularization for tf_keras."""
