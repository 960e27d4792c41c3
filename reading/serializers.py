"""Shapes of the reading API. The draft appears only where reading.selectors.visible_draft gives it."""
from collections.abc import Callable

from django.urls import reverse
from rest_framework import serializers

from . import services
from .models import CORRECTION_REASON_LIMIT, REPORT_TEXT_LIMIT, TAB_ID_LENGTH, Report
from .selectors import ReadScreen


class EventSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=12)
    client_time = serializers.DateTimeField(required=False, allow_null=True)
    tab_id = serializers.CharField(max_length=TAB_ID_LENGTH)


class TextSerializer(serializers.Serializer):
    findings = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=REPORT_TEXT_LIMIT)
    impression = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=REPORT_TEXT_LIMIT)
    finding_flags = serializers.DictField(child=serializers.BooleanField(), required=False, default=dict)
    base_version = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    tab_id = serializers.CharField(max_length=TAB_ID_LENGTH, required=False, default="")


class CorrectionSerializer(serializers.Serializer):
    findings = serializers.CharField(allow_blank=True, max_length=REPORT_TEXT_LIMIT)
    impression = serializers.CharField(allow_blank=True, max_length=REPORT_TEXT_LIMIT)
    finding_flags = serializers.DictField(child=serializers.BooleanField(), required=False, default=dict)
    reason = serializers.CharField(allow_blank=True, max_length=CORRECTION_REASON_LIMIT)


class ReportSerializer(serializers.ModelSerializer):
    submitted_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Report
        fields = ["version", "findings", "impression", "finding_flags", "reason", "submitted_at", "signed_at"]


_DATETIME = serializers.DateTimeField()


def report_data(report: Report) -> dict:
    """What ReportSerializer(report).data gives (a test holds them equal), without building a ModelSerializer
    and its fields on every submit."""
    return {"version": report.version, "findings": report.findings, "impression": report.impression,
            "finding_flags": report.finding_flags, "reason": report.reason,
            "submitted_at": _DATETIME.to_representation(report.created_at),
            "signed_at": _DATETIME.to_representation(report.signed_at)}


_MARK = 987_654_321


def id_url(name: str, *args) -> Callable[[int], str]:
    """reverse() once for a URL pattern whose last argument is an id; then each id's URL by formatting, not a
    resolver pass per row (a worklist of hundreds of reads)."""
    head, *rest = reverse(name, args=[*args, _MARK]).split(str(_MARK))
    if len(rest) != 1:  # the marker also appears in another argument: no shortcut
        return lambda pk: reverse(name, args=[*args, pk])
    tail = rest[0]
    return lambda pk: f"{head}{int(pk)}{tail}"


def read_payload(screen: ReadScreen) -> dict:
    """Everything the reading screen needs for one read: the read API's answer, and the data embedded in the
    reading page (so that a click on the worklist paints the radiograph without a second round trip)."""
    read, draft, saved, report, place = screen.read, screen.draft, screen.saved, screen.report, screen.place
    case, code = read.case, read.trial.code
    nxt = place.next_id
    return {
        "id": read.pk, "page_url": reverse("reading:read", args=[code, read.pk]),
        "case": case.code, "position": place.position, "of": place.total, "status": read.status,
        "image": {
            "display_url": reverse("reading:read_image", args=[read.pk, "display"]),
            "values_url": reverse("reading:read_image", args=[read.pk, "values"]) if case.values_image else None,
            "width": case.display_width, "height": case.display_height, "windows": case.display_windows or {},
        },
        "clinical_history": case.clinical_history,
        "findings": list(read.trial.findings),
        "draft": {"findings": draft.findings, "impression": draft.impression, "label": "AI draft"} if draft else None,
        "saved": saved.as_dict() if saved else None,
        "report": report_data(report) if report else None,
        "urls": {name: reverse(f"api-read-{name}", args=[read.pk]) for name in ("events", "autosave", "submit", "correct")},
        "next": {"id": nxt, "api_url": reverse("api-read", args=[nxt]),
                 "page_url": reverse("reading:read", args=[code, nxt]),
                 # prefetched by the client once this radiograph is painted: "next case" paints sooner
                 "display_url": reverse("reading:read_image", args=[nxt, "display"])} if nxt else None,
        "idle_after_seconds": services.IDLE_AFTER_SECONDS,
        "autosave_every_seconds": services.AUTOSAVE_EVERY_SECONDS,
        "heartbeat_seconds": services.HEARTBEAT_SECONDS,
    }
