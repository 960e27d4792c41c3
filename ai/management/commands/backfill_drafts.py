"""Request drafts for every case of a trial that lacks one, then follow them with a progress bar."""
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ai import selectors, services
from core.errors import ServiceError
from trial.access import access_for
from trial.models import Role


class Command(BaseCommand):
    help = "Generate the missing (and failed) drafts of TRIAL through the Celery workers, showing progress."

    def add_arguments(self, parser):
        parser.add_argument("trial")
        parser.add_argument("--as", dest="username", required=True, help="An investigator of the trial.")
        parser.add_argument("--no-wait", action="store_true", help="Only queue the drafts.")
        parser.add_argument("--timeout", type=int, default=3600, help="Seconds to wait for the workers.")

    def handle(self, *args, trial, username, no_wait, timeout, **options):
        user = get_user_model().objects.filter(username=username).first()
        try:
            access = access_for(user=user, code=trial, roles=[Role.INVESTIGATOR])
            requested = services.backfill(trial=access.trial, by=user)
        except (ServiceError, Exception) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from exc
        self.stdout.write(f"{len(requested)} drafts requested.")
        if no_wait:
            return
        progress = selectors.draft_progress(access=access)
        deadline = time.monotonic() + timeout
        with tqdm(total=progress["total"], desc="Drafts ready", unit="case", file=self.stderr._out) as bar:
            while True:
                progress = selectors.draft_progress(access=access)
                bar.n = progress["ready"]
                bar.set_postfix(failed=progress["failed"], running=progress["running"])
                bar.refresh()
                if progress["pending"] + progress["running"] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(1)
        self.stdout.write(f"{progress['ready']} ready, {progress['failed']} failed, "
                          f"{progress['pending'] + progress['running']} still queued.")
        if progress["failed"]:
            raise CommandError("Some drafts failed; see the AI drafts page for the reasons.")
