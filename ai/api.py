"""API of the ai app: the trial's model, draft states and progress, retry and backfill."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from trial import selectors as trial_selectors
from trial.models import Role

from . import selectors, services
from .serializers import AssignModelSerializer, DraftStateSerializer, ModelVersionSerializer

ProgressSerializer = inline_serializer("DraftProgress", {k: serializers.IntegerField() for k in
                                                         ("pending", "running", "ready", "failed", "missing", "total")})


def _investigator_trial(request, code):
    return trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.INVESTIGATOR])


class TrialModelAPI(APIView):
    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, code):
        trial = _investigator_trial(request, code)
        model = selectors.trial_model(trial=trial)
        if model is None:
            raise NotFound("This trial has no AI model yet.")
        return Response(ModelVersionSerializer(model).data)

    @extend_schema(request=AssignModelSerializer, responses=ModelVersionSerializer)
    def put(self, request, code):
        trial = _investigator_trial(request, code)
        serializer = AssignModelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assignment = services.assign_model(trial=trial, by=request.user, model_version=serializer.validated_data["model"])
        return Response(ModelVersionSerializer(assignment.model_version).data)


class DraftListAPI(APIView):
    @extend_schema(responses=DraftStateSerializer(many=True))
    def get(self, request, code):
        trial = _investigator_trial(request, code)
        return Response(DraftStateSerializer(selectors.drafts_for_trial(trial=trial, user=request.user), many=True).data)


class DraftProgressAPI(APIView):
    @extend_schema(responses=ProgressSerializer)
    def get(self, request, code):
        trial = _investigator_trial(request, code)
        return Response(selectors.draft_progress(trial=trial, user=request.user))


class DraftBackfillAPI(APIView):
    @extend_schema(request=None, responses={202: ProgressSerializer})
    def post(self, request, code):
        trial = _investigator_trial(request, code)
        services.backfill(trial=trial, by=request.user)
        return Response(selectors.draft_progress(trial=trial, user=request.user), status=status.HTTP_202_ACCEPTED)


class DraftRetryAPI(APIView):
    @extend_schema(request=None, responses={202: DraftStateSerializer})
    def post(self, request, code, draft_id):
        trial = _investigator_trial(request, code)
        draft = selectors.drafts_for_trial(trial=trial, user=request.user).filter(pk=draft_id).first()
        if draft is None:
            raise NotFound("No such draft in this trial.")
        return Response(DraftStateSerializer(services.retry_draft(draft=draft, by=request.user)).data,
                        status=status.HTTP_202_ACCEPTED)
