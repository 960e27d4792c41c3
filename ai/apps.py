from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "ai"
    verbose_name = "AI drafts"

    def ready(self) -> None:
        from trial import events

        from . import receivers, tasks  # noqa: F401 - tasks: registered in every process

        events.case_enrolled.connect(receivers.draft_on_enrolment, dispatch_uid="ai.draft_on_enrolment")
