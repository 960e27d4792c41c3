from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Blinded expert scoring"

    def ready(self) -> None:
        from reading import events as reading_events
        from trial import events

        from . import receivers

        events.trial_status_changed.connect(receivers.build_when_scoring_starts,
                                            dispatch_uid="scoring.build_when_scoring_starts")
        reading_events.conduct_sections.connect(receivers.conduct_section, dispatch_uid="scoring.conduct_section")
