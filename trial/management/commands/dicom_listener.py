"""`manage.py dicom_listener`: the DICOM listener (trial.listener), a Storage SCP for the hospitals' PACS; runs until
stopped (its own service in docker/compose.yaml; `make demo` starts it)."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from trial import listener


class Command(BaseCommand):
    help = "Receive chest films from the sites' PACS by DICOM C-STORE (C-ECHO answered too)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.CXR_DICOM_HOST)
        parser.add_argument("--port", type=int, default=settings.CXR_DICOM_PORT)
        parser.add_argument("--ae-title", default=settings.CXR_DICOM_AE_TITLE)

    def handle(self, *args, host, port, ae_title, **options):
        self.stdout.write(f"DICOM listener {ae_title} on {host}:{port}: callers are the AE titles the sites name "
                          "(the investigator's Conduct page).")
        listener.serve(host=host, port=port, ae_title=ae_title, block=True)
