"""/healthz: the database answers (used by the compose health check and load balancers)."""
from django.http import JsonResponse

from . import db


def healthz(request):
    try:
        db.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return JsonResponse({"ok": False, "database": str(exc)[:200]}, status=503)
    return JsonResponse({"ok": True})
