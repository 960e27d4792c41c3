from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "stats"
    verbose_name = "Statistics: analysis plans, runs and exports"

    def ready(self) -> None:
        from trial import audit

        # An interim look is a record the committee acted on: the audit log proves it was never changed afterwards.
        audit.register_state("stats.InterimLook", fields=(
            "trial_id", "number", "kind", "sequence", "plan_version", "plan_sha256", "information_fraction",
            "cases_complete", "planned_cases", "dataset_sha256", "results", "performed_by_id", "performed_at"),
            append_only=True)
