"""Verify the audit trail (chain, anchor, records); exit non-zero and name every problem if it does not hold."""
from django.core.management.base import BaseCommand, CommandError

from trial import audit


class Command(BaseCommand):
    help = ("Verify the audit log: its keyed hash chain, the chain against its anchor file, and every registered "
            "record (report versions, answers, drafts, allocations) against the latest event that wrote it.")

    def add_arguments(self, parser):
        parser.add_argument("--no-anchor", action="store_true", help="Do not append the verified head to the anchor.")
        parser.add_argument("--alert", action="store_true",
                            help="On a failure, e-mail the investigators of the trials concerned (as the nightly run).")
        parser.add_argument("--baseline", action="store_true",
                            help="Once, after upgrading: record the state of rows that no event recorded yet (written "
                                 "before state hashes existed), then verify.")

    def handle(self, *args, **options):
        if options["baseline"]:
            count = audit.baseline_states()
            self.stdout.write(f"Recorded the current state of {count} record(s) not covered before.")
        report = audit.verify_and_alert(alert=options["alert"], anchor=not options["no_anchor"])
        if not report.intact:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
