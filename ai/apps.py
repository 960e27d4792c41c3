from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "ai"

    def ready(self) -> None:
        # Register this app's Celery tasks in every process (web included), so that trial can find
        # them by name and send them (eagerly in tests).
        from . import tasks  # noqa: F401
