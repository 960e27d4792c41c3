"""`manage.py simulate_arrivals`: phantom films arriving at a prospective trial's sites, as from a PACS (the live demo
runs it next to the web server: scripts/run-demo.sh)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from demo import arrivals
from trial.models import Trial


class Command(BaseCommand):
    help = "Send phantom chest films to a prospective trial, one every few seconds to a minute (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--trial", default="demo-cxr", help="code of an open prospective trial")
        parser.add_argument("--min-seconds", type=float, default=5.0)
        parser.add_argument("--max-seconds", type=float, default=60.0)
        parser.add_argument("--count", type=int, default=None, help="stop after this many films (default: never)")
        parser.add_argument("--ineligible", type=float, default=0.05, help="share of ineligible films")
        parser.add_argument("--seed", type=int, default=31)

    def handle(self, *args, trial, min_seconds, max_seconds, count, ineligible, seed, **options):
        if not 0 < min_seconds <= max_seconds:
            raise CommandError("Need 0 < --min-seconds ≤ --max-seconds.")
        if not Trial.objects.filter(code=trial).exists():
            raise CommandError(f"No trial {trial!r}.")

        def report(arrival: arrivals.Arrival) -> None:
            if arrival.case is not None:
                self.stdout.write(f"{arrival.site}: {arrival.case.code} arrived"
                                  f"{' (urgent)' if arrival.case.urgent else ''}")
            else:
                self.stdout.write(f"{arrival.site}: not enrolled: {arrival.reason}")

        sent = arrivals.run(trial_code=trial, min_seconds=min_seconds, max_seconds=max_seconds, count=count,
                            seed=seed, ineligible_share=ineligible, report=report)
        self.stdout.write(f"{sent} films sent.")
