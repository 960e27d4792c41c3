"""Models of the scoring app (built by its own issue)."""
