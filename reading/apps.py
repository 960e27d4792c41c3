from django.apps import AppConfig


class ReadingConfig(AppConfig):
    name = "reading"
    verbose_name = "Reading: worklists, reports, sign-off"

    def ready(self) -> None:
        from trial import audit, events

        from . import receivers

        events.trial_status_changed.connect(receivers.route_when_reading_starts,
                                            dispatch_uid="reading.route_when_reading_starts")
        events.case_enrolled.connect(receivers.route_on_arrival, dispatch_uid="reading.route_on_arrival")
        events.readers_changed.connect(receivers.route_when_readers_change,
                                       dispatch_uid="reading.route_when_readers_change")
        # A withdrawn reader's open reads are re-routed by the same routing (route_trial closes them first).
        events.reader_withdrawn.connect(receivers.route_when_readers_change,
                                        dispatch_uid="reading.reroute_when_withdrawn")
        # and a withdrawn case's open reads are closed by it too
        events.case_withdrawn.connect(receivers.route_when_readers_change,
                                      dispatch_uid="reading.close_when_case_withdrawn")
        # A report version's text, its author and sign-off, and its read's arm and reading times (written with the
        # submit, in its transaction): what the audit log binds each report event to. Append-only in the database
        # (migration 0003), except its sign-off, added once.
        audit.register_state("reading.Report", trial="read__trial_id", append_only=True,
                             updatable=("signed_by_id", "signed_at"), fields=(
                                 "read_id", "version", "findings", "impression", "finding_flags", "reason",
                                 "author_id", "created_at", "draft_edit_distance", "draft_kept_share", "signed_by_id",
                                 "signed_at", "read__arm", "read__reader_id", "read__case_id", "read__submitted_at",
                                 "read__wall_seconds", "read__active_seconds"))
        # The clinical report of record a senior writes from both (release policy "senior"): written once, signed.
        audit.register_state("reading.RecordReport", trial="case__trial_id", fields=(
            "case_id", "findings", "impression", "author_id", "signed_at"))
