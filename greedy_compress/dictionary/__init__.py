"""Phase 1, the eval-score dictionary: the model's score with each layer compressed alone
at each candidate, built once (resumable, shardable, suffix-only) and saved as JSON."""
