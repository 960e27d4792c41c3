from django.apps import AppConfig


class TrialConfig(AppConfig):
    name = "trial"
    verbose_name = "Trials, sites, members, cases"

    def ready(self) -> None:
        from . import tasks  # noqa: F401 - register the Celery tasks in every process
