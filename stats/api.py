"""REST API of the stats app (token or session auth): plans, freezing, runs, progress, results, the export zip.

Thin: selectors read (and mask), services write. Errors go through trial.api.exception_handler.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from trial.access import access_for

from . import selectors, services
from .selectors import ANALYSTS
from .serializers import PlanContentSerializer, PlanSerializer, RunListItemSerializer, RunProgressSerializer


def _content(request) -> dict:
    serializer = PlanContentSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data["content"]


class PlanListAPI(APIView):
    @extend_schema(responses=PlanSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        return Response(PlanSerializer(selectors.plans_for(access=access), many=True).data)

    @extend_schema(request=PlanContentSerializer, responses={201: PlanSerializer})
    def post(self, request, code):
        """A new version of the plan."""
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        trial = access.trial
        plan = services.create_plan_version(trial=trial, by=request.user, content=_content(request))
        return Response(PlanSerializer(plan).data, status=status.HTTP_201_CREATED)


class PlanDetailAPI(APIView):
    @extend_schema(responses=PlanSerializer)
    def get(self, request, code, version):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        return Response(PlanSerializer(selectors.plan_for(access=access, version=version)).data)

    @extend_schema(request=PlanContentSerializer, responses=PlanSerializer)
    def put(self, request, code, version):
        """Edit an unfrozen version (409 once frozen)."""
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        plan = selectors.plan_for(access=access, version=version)
        return Response(PlanSerializer(services.edit_plan(plan=plan, by=request.user, content=_content(request))).data)


class PlanFreezeAPI(APIView):
    @extend_schema(request=None, responses=PlanSerializer)
    def post(self, request, code, version):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        plan = selectors.plan_for(access=access, version=version)
        return Response(PlanSerializer(services.freeze_plan(plan=plan, by=request.user)).data)


class RunListAPI(APIView):
    @extend_schema(responses=RunListItemSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        return Response(RunListItemSerializer(selectors.runs_for(access=access), many=True).data)

    @extend_schema(request=None, responses={202: RunProgressSerializer})
    def post(self, request, code):
        """Start a run of the last frozen plan (the trial must be locked); poll its progress."""
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        trial = access.trial
        run = services.start_run(trial=trial, by=request.user)
        run.refresh_from_db()
        return Response(selectors.run_progress(run=run), status=status.HTTP_202_ACCEPTED)


class RunDetailAPI(APIView):
    @extend_schema(responses=OpenApiResponse(description="The run: hashes, versions, arm labels and results "
                                                         "(arms masked as X/Y until unblinding)."))
    def get(self, request, code, number):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        run = selectors.run_for(access=access, number=number)
        return Response(selectors.run_summary(run=run))


class RunProgressAPI(APIView):
    @extend_schema(responses=RunProgressSerializer)
    def get(self, request, code, number):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        return Response(selectors.run_progress(run=selectors.run_for(access=access, number=number)))


class RunExportAPI(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(description="The dataset zip.")})
    def get(self, request, code, number):
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        run = selectors.run_for(access=access, number=number)
        filename, data = services.export_run(run=run, by=request.user)
        response = HttpResponse(data, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
