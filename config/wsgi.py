"""WSGI entry point (gunicorn config.wsgi)."""
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _freeze_what_lives_forever() -> None:
    """Move the objects a worker keeps for its whole life (Django's apps, models, URL resolver, settings, imported
    modules: ~300k) out of the garbage collector's reach. Without it every full collection walks them all: ~95 ms
    during which the worker answers nobody, about every 350 requests — at 500 readers a stall every few seconds per
    worker, which is what made the reading p95 collapse (bench/reading_profile.py: `--variants gcfreeze`). Python's
    own advice for long-lived servers (the gc.freeze documentation)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - build the resolver now, so that it is frozen with the rest
    gc.collect()
    gc.freeze()


_freeze_what_lives_forever()
