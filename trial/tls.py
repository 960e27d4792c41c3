"""DICOM TLS (PS3.15 B.1, the secure transport connection profile): one context from settings.CXR_DICOM_TLS_* for the
listener (server) and for reports sent to a PACS whose site asks for TLS (client)."""
from __future__ import annotations

import ssl

from django.conf import settings


def dicom_tls_context(*, server: bool) -> ssl.SSLContext | None:
    """The DICOM TLS context of settings.CXR_DICOM_TLS_* (PS3.15 B.1: TLS 1.2 or later), or None when no certificate
    is configured. A server asks the caller's certificate when a CA is set (mutual TLS)."""
    if not settings.CXR_DICOM_TLS_CERT:
        return None
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose, cafile=settings.CXR_DICOM_TLS_CA or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.CXR_DICOM_TLS_CERT, settings.CXR_DICOM_TLS_KEY or None)
    if server and settings.CXR_DICOM_TLS_CA:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
