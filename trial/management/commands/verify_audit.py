"""Walk the audit chain; exit non-zero and name the first broken link if it does not hold."""
from django.core.management.base import BaseCommand, CommandError

from trial import audit


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log."

    def handle(self, *args, **options):
        report = audit.verify()
        if not report.intact:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
