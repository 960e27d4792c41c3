from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Blinded expert scoring"

    def ready(self) -> None:
        # Register this app's Celery tasks in every process (web included), so that trial can find
        # them by name and send them (eagerly in tests).
        from . import tasks  # noqa: F401
