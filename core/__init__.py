"""Infrastructure every app stands on: errors, API helpers, the database fast path, the Celery task decorator."""
