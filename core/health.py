"""/healthz: the database answers (used by the compose health check and load balancers)."""
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return JsonResponse({"ok": False, "database": str(exc)[:200]}, status=503)
    return JsonResponse({"ok": True})
