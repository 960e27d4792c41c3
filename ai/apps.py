from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "ai"
    verbose_name = "AI drafts"

    def ready(self) -> None:
        from trial import audit, events

        from . import receivers, tasks  # noqa: F401 - tasks: registered in every process

        events.case_enrolled.connect(receivers.draft_on_enrolment, dispatch_uid="ai.draft_on_enrolment")
        events.case_image_added.connect(receivers.redraft_on_added_image, dispatch_uid="ai.redraft_on_added_image")
        # The draft's text and finding scores as stored (what the assisted reader was shown).
        audit.register_state("ai.AIDraft", trial="case__trial_id", fields=(
            "case_id", "model_version_id", "text", "findings", "impression", "finding_scores"))
