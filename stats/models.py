"""Models of the stats app (built by its own issue)."""
