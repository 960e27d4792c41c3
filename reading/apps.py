from django.apps import AppConfig


class ReadingConfig(AppConfig):
    name = "reading"
    verbose_name = "Reading: worklists, reports, sign-off"

    def ready(self) -> None:
        from trial import events

        from . import receivers

        events.trial_status_changed.connect(receivers.route_when_reading_starts,
                                            dispatch_uid="reading.route_when_reading_starts")
