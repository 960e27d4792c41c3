"""API of the ai app: the trial's model, draft states (a page at a time) and progress, retry and backfill."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, paginated, validated
from trial.access import access_for
from trial.models import Role

from . import selectors, services
from .serializers import AssignModelSerializer, DraftProgressSerializer, DraftStateSerializer, ModelVersionSerializer


def _investigator(request, code):
    return access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])


class TrialModelAPI(APIView):
    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, code):
        model = selectors.trial_model(trial=_investigator(request, code).trial)
        if model is None:
            raise NotFound("This trial has no AI model yet.")
        return Response(ModelVersionSerializer(model).data)

    @extend_schema(request=AssignModelSerializer, responses=ModelVersionSerializer)
    def put(self, request, code):
        trial = _investigator(request, code).trial
        data = validated(AssignModelSerializer, request.data)
        assignment = services.assign_model(trial=trial, by=request.user, model_version=data["model"])
        return Response(ModelVersionSerializer(assignment.model_version).data)


class DraftListAPI(APIView):
    pagination_class = Pagination

    @extend_schema(responses=DraftStateSerializer(many=True))
    def get(self, request, code):
        drafts = selectors.drafts_for_trial(access=_investigator(request, code))
        return paginated(DraftStateSerializer, drafts, request=request, view=self)


class DraftProgressAPI(APIView):
    @extend_schema(responses=DraftProgressSerializer)
    def get(self, request, code):
        access = _investigator(request, code)
        return Response(DraftProgressSerializer(selectors.draft_progress(access=access)).data)


class DraftBackfillAPI(APIView):
    @extend_schema(request=None, responses={202: DraftProgressSerializer})
    def post(self, request, code):
        access = _investigator(request, code)
        services.backfill(trial=access.trial, by=request.user)
        return Response(DraftProgressSerializer(selectors.draft_progress(access=access)).data,
                        status=status.HTTP_202_ACCEPTED)


class DraftRetryAPI(APIView):
    @extend_schema(request=None, responses={202: DraftStateSerializer})
    def post(self, request, code, draft_id):
        draft = selectors.draft_for_trial(access=_investigator(request, code), draft_id=draft_id)
        if draft is None:
            raise NotFound("No such draft in this trial.")
        return Response(DraftStateSerializer(services.retry_draft(draft=draft, by=request.user)).data,
                        status=status.HTTP_202_ACCEPTED)
