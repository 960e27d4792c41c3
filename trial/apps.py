from django.apps import AppConfig


class TrialConfig(AppConfig):
    name = "trial"
    verbose_name = "Trials, sites, members, cases"

    def ready(self) -> None:
        from . import auth, tasks  # noqa: F401 - tasks: register the Celery tasks in every process

        auth.connect_signals()
