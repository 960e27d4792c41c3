"""REST API of the stats app (token or session auth): plans, freezing, runs, progress, results, the export zip.

Thin: selectors read (and mask), services write. Errors go through trial.api.exception_handler.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validated
from trial.access import access_for
from trial.api import signed_proof
from trial.serializers import SignatureSerializer

from . import selectors, services
from .models import LookKind
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
    @extend_schema(request=SignatureSerializer, responses=PlanSerializer)
    def post(self, request, code, version):
        """Freeze a version, signed: the body carries the caller's password and a code of their second factor."""
        access = access_for(user=request.user, code=code, roles=ANALYSTS)
        plan = selectors.plan_for(access=access, version=version)
        proof = signed_proof(request)
        return Response(PlanSerializer(services.freeze_plan(plan=plan, by=request.user, proof=proof)).data)


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


# ------------------------------------------------------------------------------------------ interim looks


class InterimLookInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=LookKind.choices)


class InterimLookListAPI(APIView):
    @extend_schema(operation_id="trials_analysis_interim_list",
                   responses=OpenApiResponse(description="Every interim look: kind, number, date, information "
                                                         "fraction, and whether the caller may open its results."))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
        return Response(selectors.looks_for(access=access))

    @extend_schema(request=InterimLookInputSerializer,
                   responses={201: OpenApiResponse(description="The look taken, with its results.")})
    def post(self, request, code):
        """Take an interim look the frozen plan plans (blinded re-estimation: statisticians; safety and efficacy:
        the data-monitoring committee)."""
        access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
        kind = validated(InterimLookInputSerializer, request.data)["kind"]
        look = services.take_interim_look(trial=access.trial, by=request.user, kind=kind)
        look = selectors.look_for(access=access, number=look.number)
        return Response(selectors.look_detail(access=access, look=look), status=status.HTTP_201_CREATED)


class InterimLookDetailAPI(APIView):
    @extend_schema(responses=OpenApiResponse(description="One interim look with its results (safety and efficacy: "
                                                         "the data-monitoring committee only until unblinding)."))
    def get(self, request, code, number):
        access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
        look = selectors.look_for(access=access, number=number)
        return Response(selectors.look_detail(access=access, look=look))
