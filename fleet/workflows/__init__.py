"""The use cases: each reads, diffs with the model, and acts through adapters."""
