"""The scoring API: the expert's items and answers, the investigator's completion and build, the
adjudicator's queue, and the results after unblinding. Thin: selectors read (and blind), services write."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validated
from core.errors import ServiceError
from trial import selectors as trial_selectors
from trial.models import Role

from . import selectors, services
from .serializers import (
    AdjudicationSerializer,
    FindingsSerializer,
    PreferenceSerializer,
    QualitySerializer,
    SettingsSerializer,
    settings_payload,
)


def _trial(request, code, *roles):
    return trial_selectors.trial_for_user(code=code, user=request.user, roles=list(roles))


def item_payload(assignment) -> dict:
    view = selectors.item_view(assignment=assignment)
    key = assignment.key
    view["urls"] = {"self": reverse("api-scoring-item", args=[key]),
                    "page": reverse("scoring:item", args=[assignment.item.trial.code, key]),
                    "answer": reverse(f"api-scoring-{assignment.item.kind}", args=[key])}
    view["next_url"] = reverse("api-scoring-item", args=[view["next_key"]]) if view["next_key"] else None
    return view


class ExpertItemsAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        """The expert's own items in their stored order: position, kind and state, nothing else."""
        trial = _trial(request, code, Role.EXPERT)
        wl = selectors.worklist(trial=trial, expert_user=request.user)
        return Response({"done": wl.done, "total": wl.total, "items": [
            {"key": r.key, "position": r.position, "kind": r.kind, "label": r.label, "done": r.done,
             "available": r.available, "api_url": reverse("api-scoring-item", args=[r.key])} for r in wl.rows]})


class ExpertItemAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, key):
        assignment = selectors.assignment_for_expert(key=key, user=request.user)
        payload = item_payload(assignment)
        if payload["image"] is not None and payload["open"] and not payload["replaced"]:
            services.open_assignment(assignment=assignment, by=request.user)  # the time spent starts here
        return Response(payload)


class _AnswerAPI(APIView):
    serializer_class = None

    def submit(self, assignment, data):  # pragma: no cover - each subclass says how
        raise NotImplementedError

    def post(self, request, key):
        assignment = selectors.assignment_for_expert(key=key, user=request.user)
        data = validated(self.serializer_class, request.data)
        self.submit(assignment, data)
        return Response(item_payload(assignment), status=status.HTTP_201_CREATED)


class QualityAPI(_AnswerAPI):
    serializer_class = QualitySerializer

    @extend_schema(request=QualitySerializer, responses={201: dict})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_quality_score(assignment=assignment, by=self.request.user, overall=data["overall"],
                                      radpeer=data["radpeer"], subscores=data["subscores"], comment=data["comment"],
                                      reason=data.get("correction_reason"))


class PreferenceAPI(_AnswerAPI):
    serializer_class = PreferenceSerializer

    @extend_schema(request=PreferenceSerializer, responses={201: dict})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_preference(assignment=assignment, by=self.request.user, choice=data["choice"],
                                   reason_text=data["reason"], reason=data.get("correction_reason"))


class FindingsAPI(_AnswerAPI):
    serializer_class = FindingsSerializer

    @extend_schema(request=FindingsSerializer, responses={201: dict})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_findings(assignment=assignment, by=self.request.user, marks=data["marks"],
                                 reason=data.get("correction_reason"))


class ProgressAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        trial = _trial(request, code, Role.INVESTIGATOR)
        return Response(selectors.progress(trial=trial, user=request.user))


class BuildAPI(APIView):
    @extend_schema(request=None, responses={200: dict})
    def post(self, request, code):
        """Build the items of every ready case now (idempotent); rebuild items whose report changed."""
        trial = _trial(request, code, Role.INVESTIGATOR)
        result = services.build_items(trial=trial, by=request.user)
        return Response({"created": result.created, "superseded": result.superseded,
                         "progress": selectors.progress(trial=trial, user=request.user)})


class SettingsAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        trial = _trial(request, code, Role.INVESTIGATOR)
        return Response(settings_payload(selectors.settings_for(trial=trial, user=request.user)))

    @extend_schema(request=SettingsSerializer, responses=dict)
    def put(self, request, code):
        trial = _trial(request, code, Role.INVESTIGATOR)
        data = validated(SettingsSerializer, request.data)
        if "adjudicator" in data:
            pseudonym = data["adjudicator"]
            data["adjudicator"] = trial.memberships.filter(pseudonym=pseudonym, role=Role.EXPERT).first() \
                if pseudonym else None
            if pseudonym and data["adjudicator"] is None:
                raise ServiceError(f"No expert “{pseudonym}” in this trial.", field="adjudicator")
        return Response(settings_payload(services.update_settings(trial=trial, by=request.user, **data)))


class AdjudicationQueueAPI(APIView):
    @extend_schema(operation_id="trials_scoring_adjudication_queue", responses=dict)
    def get(self, request, code):
        trial = _trial(request, code, Role.EXPERT)
        return Response([{**row, "api_url": reverse("api-scoring-adjudicate", args=[trial.code, row["key"]])}
                         for row in selectors.adjudication_queue(trial=trial, user=request.user)])


class AdjudicateAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code, key):
        trial = _trial(request, code, Role.EXPERT)
        return Response(selectors.adjudication_view(item=selectors.adjudication_item(trial=trial, key=key,
                                                                                     user=request.user)))

    @extend_schema(request=AdjudicationSerializer, responses=dict)
    def post(self, request, code, key):
        trial = _trial(request, code, Role.EXPERT)
        item = selectors.adjudication_item(trial=trial, key=key, user=request.user)
        data = validated(AdjudicationSerializer, request.data)
        services.adjudicate(item=item, by=request.user, decisions=data["decisions"], reason=data["reason"])
        return Response(selectors.adjudication_view(item=item))


class ResultsAPI(APIView):
    @extend_schema(responses=dict)
    def get(self, request, code):
        """The scoring data set (see scoring.selectors.analysis_rows), after unblinding only."""
        trial = _trial(request, code, Role.INVESTIGATOR, Role.STATISTICIAN)
        return Response(selectors.results_for(trial=trial, user=request.user))
