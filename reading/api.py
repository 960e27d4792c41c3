"""The reading API used by the reading screen (and by anyone scripting a reader study). Thin: selectors read,
services write; every answer has a declared shape (reading.serializers)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, paginated, validated
from trial.access import access_for
from trial.api import signed_proof
from trial.models import Role
from trial.serializers import SignatureSerializer

from . import selectors, services
from .serializers import (
    CorrectionSerializer,
    EventRecordedSerializer,
    EventSerializer,
    ReadPayloadSerializer,
    ReportSerializer,
    SavedSerializer,
    SignoffItemSerializer,
    SubmittedSerializer,
    TextSerializer,
    WorklistRowSerializer,
    WorklistSerializer,
    read_payload,
)


class WorklistAPI(APIView):
    @extend_schema(responses=WorklistSerializer)
    def get(self, request, code):
        worklist = selectors.worklist(access=access_for(user=request.user, code=code, roles=[Role.READER]))
        return paginated(WorklistRowSerializer, worklist.rows, request=request, view=self,
                         extra={"done": worklist.done, "total": worklist.total})


class ReadAPI(APIView):
    @extend_schema(responses=ReadPayloadSerializer)
    def get(self, request, read_id):
        read = selectors.own_read(read_id=read_id, user=request.user)
        services.note_delivery(read=read)
        return Response(read_payload(selectors.read_screen(read=read)))


class ReadEventAPI(APIView):
    @extend_schema(request=EventSerializer, responses={201: EventRecordedSerializer})
    def post(self, request, read_id):
        data = validated(EventSerializer, request.data)
        event = services.record_event(read_id=read_id, by=request.user, kind=data["kind"], tab_id=data["tab_id"],
                                      client_time=data.get("client_time"))
        return Response(EventRecordedSerializer(event).data, status=status.HTTP_201_CREATED)


class AutosaveAPI(APIView):
    def _save(self, request, read_id):
        data = validated(TextSerializer, request.data)
        # a stale tab's save is refused with 409 and the newer text (core.api.exception_handler)
        saved = services.autosave(read_id=read_id, by=request.user, findings=data["findings"],
                                  impression=data["impression"], finding_flags=data["finding_flags"],
                                  base_version=data.get("base_version"), tab_id=data["tab_id"])
        return Response(SavedSerializer(saved).data)

    @extend_schema(request=TextSerializer, responses=SavedSerializer)
    def put(self, request, read_id):
        return self._save(request, read_id)

    @extend_schema(request=TextSerializer, responses=SavedSerializer)
    def post(self, request, read_id):
        """Same as PUT, for navigator.sendBeacon when the page is closing."""
        return self._save(request, read_id)


class SubmitAPI(APIView):
    @extend_schema(request=TextSerializer, responses={201: SubmittedSerializer})
    def post(self, request, read_id):
        data = validated(TextSerializer, request.data)
        report = services.submit_report(read_id=read_id, by=request.user, findings=data["findings"],
                                        impression=data["impression"], finding_flags=data["finding_flags"],
                                        base_version=data.get("base_version"), tab_id=data["tab_id"])
        return Response(SubmittedSerializer({"report": report}).data, status=status.HTTP_201_CREATED)


class CorrectAPI(APIView):
    @extend_schema(request=CorrectionSerializer, responses={201: SubmittedSerializer})
    def post(self, request, read_id):
        read = selectors.own_read(read_id=read_id, user=request.user)
        data = validated(CorrectionSerializer, request.data)
        report = services.correct_report(read_id=read.pk, by=request.user, **data)
        return Response(SubmittedSerializer({"report": report}).data, status=status.HTTP_201_CREATED)


class SignoffQueueAPI(APIView):
    pagination_class = Pagination  # the schema shows the page: {count, next, previous, results}

    @extend_schema(responses=SignoffItemSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
        return paginated(SignoffItemSerializer, selectors.signoff_queue(access=access), request=request, view=self)


class SignAPI(APIView):
    @extend_schema(request=SignatureSerializer, responses=ReportSerializer)
    def post(self, request, code, report_id):
        """Sign, with the senior's password and a code of their second factor in the body (every call: an API
        client has no continuous session of signings)."""
        access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
        report = selectors.report_for_senior(access=access, report_id=report_id)
        proof = signed_proof(request)
        return Response(ReportSerializer(services.sign_report(report=report, by=request.user, proof=proof)).data)
