"""Create (once) a demo trial in the paper's design with one login per role, and enrol a first case."""
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from trial import services
from trial.errors import ServiceError
from trial.models import Role, Status, Trial

DEMO_CODE = "demo-cxr"
DEMO_PASSWORD = "demo-password-2026"
SITES = [("site-a", "Hospital A"), ("site-b", "Hospital B"), ("site-c", "Hospital C")]


class Command(BaseCommand):
    help = "Create the demo trial and its users (idempotent), then print one login per role."

    def handle(self, *args, **options):
        if not Trial.objects.filter(code=DEMO_CODE).exists():
            self._create()
        self._print_logins()

    def _user(self, username: str, **extra):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not hasattr(self, "_password_hash"):  # hash once: the hasher is slow on purpose
                self._password_hash = make_password(DEMO_PASSWORD)
            user = User.objects.create(username=username, email=f"{username}@demo.invalid",
                                       password=self._password_hash, **extra)
        return user

    @transaction.atomic
    def _create(self):
        investigator = self._user("investigator")
        investigator.user_permissions.add(Permission.objects.get(codename="add_trial"))
        investigator = get_user_model().objects.get(pk=investigator.pk)  # drop the permission cache
        self._user("admin", is_staff=True, is_superuser=True)
        trial = services.create_trial(
            by=investigator, code=DEMO_CODE, title="Demo: AI-assisted chest radiograph reporting",
            registration_id="NCT00000000", experts_per_item=5,
        )
        sites = [services.add_site(trial=trial, by=investigator, code=c, name=n) for c, n in SITES]
        for i in range(6):  # two readers per site, randomized 1:1 within site when enrolment opens
            services.add_member(trial=trial, by=investigator, user=self._user(f"reader{i + 1}"),
                                role=Role.READER, site=sites[i // 2])
        services.add_member(trial=trial, by=investigator, user=self._user("senior"), role=Role.SENIOR)
        for i in range(5):
            services.add_member(trial=trial, by=investigator, user=self._user(f"expert{i + 1}"), role=Role.EXPERT)
        services.add_member(trial=trial, by=investigator, user=self._user("statistician"), role=Role.STATISTICIAN)
        trial = services.transition_trial(trial=trial, by=investigator, to=Status.ENROLLING)
        try:
            from pydicom.data import get_testdata_file

            path = get_testdata_file("RG1_UNCR.dcm", download=False)
            if path:
                with open(path, "rb") as fh:
                    services.enrol_case(trial=trial, site=sites[0], by=investigator, data=fh.read(),
                                        filename="RG1_UNCR.dcm", clinical_history="Cough and fever for 3 days.")
        except (ImportError, ServiceError) as exc:
            self.stderr.write(f"Demo case not enrolled: {exc}")
        self.stdout.write(self.style.SUCCESS(f"Demo trial {DEMO_CODE} created."))

    def _print_logins(self):
        self.stdout.write(f"\nLogins (password for all: {DEMO_PASSWORD}):")
        for username, role in [("investigator", "investigator"), ("reader1", "reader (site-a)"),
                               ("senior", "senior"), ("expert1", "expert"), ("statistician", "statistician"),
                               ("admin", "staff admin")]:
            self.stdout.write(f"  {role:<22} {username}")
