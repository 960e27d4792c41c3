from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Blinded expert scoring"

    def ready(self) -> None:
        from trial import events

        from . import receivers

        events.trial_status_changed.connect(receivers.build_when_scoring_starts,
                                            dispatch_uid="scoring.build_when_scoring_starts")
