from django.apps import AppConfig


class ReadingConfig(AppConfig):
    name = "reading"

    def ready(self) -> None:
        # Register this app's Celery tasks in every process (web included), so that trial can find
        # them by name and send them (eagerly in tests).
        from . import tasks  # noqa: F401
