"""Models of the reading app (built by its own issue)."""
