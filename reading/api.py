"""The reading API used by the reading screen (and by anyone scripting a reader study)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validated
from trial import selectors as trial_selectors
from trial.models import Role

from . import selectors, services
from .models import Read
from .serializers import (
    CorrectionSerializer,
    EventSerializer,
    ReportSerializer,
    TextSerializer,
    id_url,
    read_payload,
    report_data,
)


class WorklistAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        wl = selectors.worklist(reader=selectors.reader_of(code=code, user=request.user))
        api_url = id_url("api-read")
        return Response({"done": wl.done, "total": wl.total, "reads": [
            {"id": r.id, "position": r.position, "case": r.case_code, "status": r.status, "available": r.available,
             "api_url": api_url(r.id)} for r in wl.rows]})


class ReadAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, read_id):
        read = selectors.read_for_reader(read_id=read_id, reader_user=request.user)
        return Response(read_payload(selectors.read_screen(read=read)))


class ReadEventAPI(APIView):
    @extend_schema(request=EventSerializer, responses={201: dict})
    def post(self, request, read_id):
        data = validated(EventSerializer, request.data)
        read = Read(pk=read_id)  # the service loads it under its lock and refuses what is not the reader's
        event = services.record_event(read=read, by=request.user, kind=data["kind"], tab_id=data["tab_id"],
                                      client_time=data.get("client_time"))
        return Response({"server_time": event.server_time.isoformat()}, status=status.HTTP_201_CREATED)


class AutosaveAPI(APIView):
    def _save(self, request, read_id):
        data = validated(TextSerializer, request.data)
        read = Read(pk=read_id)  # the service loads it under its lock and refuses what is not the reader's
        # a stale tab's save is refused with 409 and the newer text (trial.api.exception_handler)
        saved = services.autosave(read=read, by=request.user, findings=data["findings"],
                                  impression=data["impression"], finding_flags=data["finding_flags"],
                                  base_version=data.get("base_version"), tab_id=data["tab_id"])
        return Response({"version": saved.version, "saved_at": saved.saved_at.isoformat()})

    @extend_schema(request=TextSerializer, responses=dict)
    def put(self, request, read_id):
        return self._save(request, read_id)

    @extend_schema(request=TextSerializer, responses=dict)
    def post(self, request, read_id):
        """Same as PUT, for navigator.sendBeacon when the page is closing."""
        return self._save(request, read_id)


class SubmitAPI(APIView):
    @extend_schema(request=TextSerializer, responses={201: ReportSerializer})
    def post(self, request, read_id):
        data = validated(TextSerializer, request.data)
        read = Read(pk=read_id)  # the service loads it under its lock and refuses what is not the reader's
        report = services.submit_report(read=read, by=request.user, findings=data["findings"],
                                        impression=data["impression"], finding_flags=data["finding_flags"],
                                        base_version=data.get("base_version"), tab_id=data["tab_id"])
        return Response({"report": report_data(report)}, status=status.HTTP_201_CREATED)


class CorrectAPI(APIView):
    @extend_schema(request=CorrectionSerializer, responses={201: ReportSerializer})
    def post(self, request, read_id):
        read = selectors.read_for_reader(read_id=read_id, reader_user=request.user)
        data = validated(CorrectionSerializer, request.data)
        report = services.correct_report(read=read, by=request.user, **data)
        return Response({"report": ReportSerializer(report).data}, status=status.HTTP_201_CREATED)


class SignoffQueueAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.SENIOR])
        return Response([{"id": r.pk, "case": r.read.case.code, "reader": r.read.reader.pseudonym,
                          "arm": r.read.arm, **ReportSerializer(r).data}
                         for r in selectors.signoff_queue(trial=trial, user=request.user)])


class SignAPI(APIView):
    @extend_schema(request=None, responses=ReportSerializer)
    def post(self, request, code, report_id):
        trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.SENIOR])
        report = selectors.report_for_senior(trial=trial, report_id=report_id, user=request.user)
        return Response(ReportSerializer(services.sign_report(report=report, by=request.user)).data)
