"""Shapes of the reading API, in and out. The draft appears only where reading.selectors.visible_draft gives it."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from . import timing
from .models import CORRECTION_REASON_LIMIT, REPORT_TEXT_LIMIT, TAB_ID_LENGTH, ReadEvent, ReadStatus, Report
from .selectors import ReadScreen, primary_image, viewer_images

# ------------------------------------------------------------------------------------------ input


class EventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReadEvent.Kind.choices)
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


# ------------------------------------------------------------------------------------------ output


class ReportSerializer(serializers.ModelSerializer):
    submitted_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Report
        fields = ["version", "findings", "impression", "finding_flags", "reason", "submitted_at", "signed_at"]


class SubmittedSerializer(serializers.Serializer):
    report = ReportSerializer()


class WorklistRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    case = serializers.CharField(source="case_code")
    status = serializers.ChoiceField(choices=ReadStatus.choices)
    available = serializers.BooleanField()
    api_url = serializers.SerializerMethodField()

    def get_api_url(self, row) -> str:
        return reverse("api-read", args=[row.id])


class WorklistSerializer(serializers.Serializer):
    """One page of the reader's worklist (?limit=&offset=), with the reader's progress over all of it."""
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WorklistRowSerializer(many=True)
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class EventRecordedSerializer(serializers.Serializer):
    server_time = serializers.DateTimeField()


class SavedSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    saved_at = serializers.DateTimeField()


class SavedTextSerializer(SavedSerializer):
    findings = serializers.CharField(allow_blank=True)
    impression = serializers.CharField(allow_blank=True)
    finding_flags = serializers.DictField(child=serializers.BooleanField())


class DraftSerializer(serializers.Serializer):
    findings = serializers.CharField(allow_blank=True)
    impression = serializers.CharField(allow_blank=True)
    label = serializers.CharField()


class ImageSerializer(serializers.Serializer):
    display_url = serializers.CharField()
    values_url = serializers.CharField(allow_null=True)
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    # preset name (file, auto, lung, mediastinum, bone) → [center, width] in the values image's units, or None
    windows = serializers.DictField(child=serializers.ListField(child=serializers.FloatField(), min_length=2,
                                                                max_length=2, allow_null=True))


class StudyImageSerializer(ImageSerializer):
    """One image of the case's study: the primary (position 1, the same as `image`) or another (a lateral...)."""
    position = serializers.IntegerField(min_value=1, help_text="1: the primary image; then as received.")
    view_position = serializers.CharField(allow_blank=True, help_text="DICOM View Position: PA, AP, LL…")


class NextReadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    api_url = serializers.CharField()
    page_url = serializers.CharField()
    display_url = serializers.CharField()


class ReadUrlsSerializer(serializers.Serializer):
    events = serializers.CharField()
    autosave = serializers.CharField()
    submit = serializers.CharField()
    correct = serializers.CharField()


class ReadPayloadSerializer(serializers.Serializer):
    """The read API's answer, which the reading page also embeds (read_payload builds it)."""
    id = serializers.IntegerField()
    page_url = serializers.CharField()
    case = serializers.CharField()
    position = serializers.IntegerField()
    of = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ReadStatus.choices)
    image = ImageSerializer()
    images = StudyImageSerializer(many=True, help_text="Every image of the case's study, the primary (`image`) first.")
    clinical_history = serializers.CharField(allow_blank=True)
    findings = serializers.ListField(child=serializers.CharField())
    draft = DraftSerializer(allow_null=True)
    saved = SavedTextSerializer(allow_null=True)
    report = ReportSerializer(allow_null=True)
    urls = ReadUrlsSerializer()
    next = NextReadSerializer(allow_null=True)
    idle_after_seconds = serializers.IntegerField()
    autosave_every_seconds = serializers.IntegerField()
    heartbeat_seconds = serializers.IntegerField()


class SignoffItemSerializer(ReportSerializer):
    """A report waiting for the senior: never its arm (and so never whether the AI was involved)."""
    id = serializers.IntegerField()
    case = serializers.CharField(source="read.case.code")
    reader = serializers.CharField(source="read.reader.pseudonym")

    class Meta(ReportSerializer.Meta):
        fields = ["id", "case", "reader", *ReportSerializer.Meta.fields]


def read_payload(screen: ReadScreen) -> dict:
    """Everything the reading screen needs for one read (ReadPayloadSerializer's shape): the read API's answer,
    and the data embedded in the reading page (so that a click on the worklist paints the radiograph without a
    second round trip)."""
    read, draft, saved, report, place = screen.read, screen.draft, screen.saved, screen.report, screen.place
    case, code = read.case, read.trial.code
    nxt = place.next_id

    def url(position: int, kind: str) -> str:   # the primary keeps the address it had before a case had more images
        if position == 1:
            return reverse("reading:read_image", args=[read.pk, kind])
        return reverse("reading:study_image", args=[read.pk, position, kind])

    images = viewer_images(screen.images, url)
    primary = primary_image(images)
    return {
        "id": read.pk, "page_url": reverse("reading:read", args=[code, read.pk]),
        "case": case.code, "position": place.position, "of": place.total, "status": read.status,
        "image": primary,
        "images": images,
        "clinical_history": case.clinical_history,
        "findings": list(read.trial.findings),
        "draft": {"findings": draft.findings, "impression": draft.impression, "label": "AI draft"} if draft else None,
        "saved": saved.as_dict() if saved else None,
        "report": ReportSerializer(report).data if report else None,
        "urls": {name: reverse(f"api-read-{name}", args=[read.pk])
                 for name in ("events", "autosave", "submit", "correct")},
        "next": {"id": nxt, "api_url": reverse("api-read", args=[nxt]),
                 "page_url": reverse("reading:read", args=[code, nxt]),
                 # prefetched by the client once this radiograph is painted: "next case" paints sooner
                 "display_url": reverse("reading:read_image", args=[nxt, "display"])} if nxt else None,
        "idle_after_seconds": timing.IDLE_AFTER_SECONDS,
        "autosave_every_seconds": timing.AUTOSAVE_EVERY_SECONDS,
        "heartbeat_seconds": timing.HEARTBEAT_SECONDS,
    }
