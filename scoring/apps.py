from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Blinded expert scoring"

    def ready(self) -> None:
        from reading import events as reading_events
        from trial import audit, events

        from . import receivers

        events.trial_status_changed.connect(receivers.build_when_scoring_starts,
                                            dispatch_uid="scoring.build_when_scoring_starts")
        reading_events.reports_final.connect(receivers.build_when_reports_final,
                                             dispatch_uid="scoring.build_when_reports_final")
        reading_events.conduct_sections.connect(receivers.backlog_section, dispatch_uid="scoring.backlog_section")
        reading_events.conduct_sections.connect(receivers.conduct_section, dispatch_uid="scoring.conduct_section")
        # The experts' answers, written once (migration 0004 refuses UPDATE and DELETE), and the reference standard
        # decided from them: what the audit log binds each answer's event to.
        answer = ("assignment_id", "version", "correction_reason", "opened_at", "submitted_at")
        trial = "assignment__item__trial_id"
        audit.register_state("scoring.QualityScore", trial=trial, append_only=True,
                             fields=(*answer, "overall", "subscores", "radpeer", "comment"))
        audit.register_state("scoring.Preference", trial=trial, append_only=True,
                             fields=(*answer, "choice", "reason", "ai_guess"))
        audit.register_state("scoring.FindingVote", trial=trial, append_only=True, fields=(*answer, "marks"))
        audit.register_state("scoring.ReferenceStandard", fields=(
            "case_id", "finding", "present", "method", "votes_present", "votes_absent", "votes_uncertain",
            "decided_by_id"))
