"""Models of the ai app (built by its own issue)."""
