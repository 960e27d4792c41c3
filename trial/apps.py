from django.apps import AppConfig


class TrialConfig(AppConfig):
    name = "trial"
    verbose_name = "Trials, sites, members, cases"

    def ready(self) -> None:
        from . import audit, tasks  # noqa: F401 - tasks: register the Celery tasks in every process

        # The allocation is what the audit log proves was never changed after it was drawn (its arm above all).
        audit.register_state("trial.Allocation", fields=(
            "trial_id", "stratum", "position", "unit_type", "membership_id", "case_id", "arm", "block", "block_size",
            "allocated_by_id", "allocated_at"))
        # An electronic signature: who signed what, meaning what, bound to which content hash.
        audit.register_state("trial.Signature", fields=(
            "trial_id", "signer_id", "signer_name", "meaning", "object_type", "object_id", "content_hash", "method",
            "signed_at"), append_only=True)
        # A released report of record (trial.outbox): what left, or will leave, for the hospital; never changed.
        audit.register_state("trial.Release", fields=(
            "trial_id", "case_id", "version", "source", "findings", "impression", "signed_by_id", "signer_name",
            "signed_at", "sr_sop_instance_uid", "amends_id"), append_only=True)
        audit.register_state("trial.Delivery", trial="release__trial_id", fields=(
            "release_id", "channel", "destination", "state", "attempts", "delivered_at"))
