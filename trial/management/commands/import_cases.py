"""Enrol every DICOM file of a folder into a trial site, with a progress bar and a per-file verdict."""
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.errors import ServiceError
from trial import selectors, services
from trial.access import access_for
from trial.models import Role


class Command(BaseCommand):
    help = "Import a folder of DICOM files as cases of TRIAL at SITE (rejections are listed, nothing kept from them)."

    def add_arguments(self, parser):
        parser.add_argument("trial")
        parser.add_argument("site")
        parser.add_argument("folder")
        parser.add_argument("--as", dest="username", required=True, help="An investigator of the trial.")
        parser.add_argument("--history-suffix", default=".txt",
                            help="A text file next to each DICOM file with this suffix holds its clinical history.")

    def handle(self, *args, trial, site, folder, username, history_suffix, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username}.")
        try:
            access = access_for(user=user, code=trial, roles=[Role.INVESTIGATOR])
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        trial_obj = access.trial
        site_obj = selectors.site_by_code(access=access, code=site)
        if site_obj is None:
            raise CommandError(f"No site {site} in {trial}.")
        root = Path(folder)
        if not root.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != history_suffix)
        enrolled, rejected = 0, []
        for path in tqdm(files, desc="Enrolling", unit="file", file=self.stderr._out):
            history_file = path.with_suffix(history_suffix)
            history = history_file.read_text(encoding="utf-8") if history_file.exists() else ""
            try:
                case = services.enrol_case(trial=trial_obj, site=site_obj, by=user, data=path.read_bytes(),
                                           filename=path.name, clinical_history=history)
                # a case is a study: an image joins its study's case, or waits for the study's frontal image
                enrolled += case is not None
            except ServiceError as exc:
                rejected.append((path, exc.message))
        for path, reason in rejected:
            self.stdout.write(f"REJECTED {path}: {reason}")
        waiting = len(files) - enrolled - len(rejected)
        self.stdout.write(self.style.SUCCESS(
            f"{enrolled} enrolled or added to their study's case, {len(rejected)} rejected, {waiting} waiting for a "
            f"frontal image of their study, of {len(files)} files."))
