"""The scoring API: the expert's items and answers, the investigator's completion and build, the
adjudicator's queue, and the results after unblinding. Thin: selectors read (and blind), services write, and
every answer has a declared shape (scoring.serializers). The item URLs name no trial: an item's opaque key is
enough, and only its expert reaches it."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, paginated, validated
from core.errors import ServiceError
from trial.access import access_for
from trial.models import Role

from . import selectors, services
from .serializers import (
    AdjudicationRowSerializer,
    AdjudicationSerializer,
    AdjudicationViewSerializer,
    BuildSerializer,
    FindingsSerializer,
    ItemListSerializer,
    ItemRowSerializer,
    ItemSerializer,
    PreferenceSerializer,
    ProgressSerializer,
    QualitySerializer,
    ResultsSerializer,
    SettingsOutputSerializer,
    SettingsSerializer,
)


def _access(request, code, *roles):
    return access_for(user=request.user, code=code, roles=roles)


def _item(assignment, view: dict | None = None) -> dict:
    """The item as its expert sees it, with the URLs of what they can do with it."""
    view = dict(view or selectors.item_view(assignment=assignment))
    key = assignment.key
    view["urls"] = {"self": reverse("api-scoring-item", args=[key]),
                    "page": reverse("scoring:item", args=[assignment.item.trial.code, key]),
                    "answer": reverse(f"api-scoring-{assignment.item.kind}", args=[key]),
                    "open": reverse("api-scoring-item-open", args=[key])}
    view["next_url"] = reverse("api-scoring-item", args=[view["next_key"]]) if view["next_key"] else None
    return ItemSerializer(view).data


class ExpertItemsAPI(APIView):
    @extend_schema(responses=ItemListSerializer)
    def get(self, request, code):
        """The expert's own items in their stored order (a page at a time): position, kind and state, nothing
        else; `done` and `total` count all of them."""
        wl = selectors.worklist(access=_access(request, code, Role.EXPERT))
        response = paginated(ItemRowSerializer, wl.rows, request=request, view=self)
        response.data.update(done=wl.done, total=wl.total)
        return response


class ExpertItemAPI(APIView):
    @extend_schema(responses=ItemSerializer)
    def get(self, request, key):
        """The item; reading it changes nothing (POST to its `open` URL when it is shown)."""
        return Response(_item(selectors.own_assignment(key=key, user=request.user)))


class ExpertItemOpenAPI(APIView):
    @extend_schema(request=None, responses=ItemSerializer)
    def post(self, request, key):
        """The item is on the expert's screen: the time spent on it starts now (the first time only)."""
        assignment = selectors.own_assignment(key=key, user=request.user)
        view = selectors.item_view(assignment=assignment)
        if selectors.opens(view):
            services.open_assignment(assignment=assignment, by=request.user)
        return Response(_item(assignment, view))


class _AnswerAPI(APIView):
    serializer_class = None

    def submit(self, assignment, data):  # pragma: no cover - each subclass says how
        raise NotImplementedError

    def post(self, request, key):
        assignment = selectors.own_assignment(key=key, user=request.user)
        data = validated(self.serializer_class, request.data)
        self.submit(assignment, data)
        return Response(_item(assignment), status=status.HTTP_201_CREATED)


class QualityAPI(_AnswerAPI):
    serializer_class = QualitySerializer

    @extend_schema(request=QualitySerializer, responses={201: ItemSerializer})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_quality_score(assignment=assignment, by=self.request.user, overall=data["overall"],
                                      radpeer=data["radpeer"], subscores=data["subscores"], comment=data["comment"],
                                      reason=data.get("correction_reason"))


class PreferenceAPI(_AnswerAPI):
    serializer_class = PreferenceSerializer

    @extend_schema(request=PreferenceSerializer, responses={201: ItemSerializer})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_preference(assignment=assignment, by=self.request.user, choice=data["choice"],
                                   reason_text=data["reason"], ai_guess=data["ai_guess"],
                                   reason=data.get("correction_reason"))


class FindingsAPI(_AnswerAPI):
    serializer_class = FindingsSerializer

    @extend_schema(request=FindingsSerializer, responses={201: ItemSerializer})
    def post(self, request, key):
        return super().post(request, key)

    def submit(self, assignment, data):
        services.submit_findings(assignment=assignment, by=self.request.user, marks=data["marks"],
                                 reason=data.get("correction_reason"))


class ProgressAPI(APIView):
    @extend_schema(responses=ProgressSerializer)
    def get(self, request, code):
        access = _access(request, code, Role.INVESTIGATOR)
        return Response(ProgressSerializer(selectors.progress(access=access)).data)


class BuildAPI(APIView):
    @extend_schema(request=None, responses={200: BuildSerializer})
    def post(self, request, code):
        """Build the items of every ready case now (idempotent); rebuild items whose report changed."""
        access = _access(request, code, Role.INVESTIGATOR)
        result = services.build_items(trial=access.trial, by=request.user)
        return Response(BuildSerializer({"created": result.created, "superseded": result.superseded,
                                         "progress": selectors.progress(access=access)}).data)


class SettingsAPI(APIView):
    @extend_schema(responses=SettingsOutputSerializer)
    def get(self, request, code):
        access = _access(request, code, Role.INVESTIGATOR)
        return Response(SettingsOutputSerializer(selectors.settings_for(access=access)).data)

    @extend_schema(request=SettingsSerializer, responses=SettingsOutputSerializer)
    def put(self, request, code):
        access = _access(request, code, Role.INVESTIGATOR)
        data = validated(SettingsSerializer, request.data)
        if "adjudicator" in data:
            pseudonym = data["adjudicator"]
            data["adjudicator"] = (selectors.expert_by_pseudonym(access=access, pseudonym=pseudonym)
                                   if pseudonym else None)
            if pseudonym and data["adjudicator"] is None:
                raise ServiceError(f"No expert “{pseudonym}” in this trial.", field="adjudicator")
        scoring_settings = services.update_settings(trial=access.trial, by=request.user, **data)
        return Response(SettingsOutputSerializer(scoring_settings).data)


class AdjudicationQueueAPI(APIView):
    pagination_class = Pagination

    @extend_schema(operation_id="trials_scoring_adjudication_queue", responses=AdjudicationRowSerializer(many=True))
    def get(self, request, code):
        access = _access(request, code, Role.EXPERT)
        return paginated(AdjudicationRowSerializer, selectors.adjudication_queue(access=access), request=request,
                         view=self, context={"code": access.trial.code})


class AdjudicateAPI(APIView):
    @extend_schema(responses=AdjudicationViewSerializer)
    def get(self, request, code, key):
        item = selectors.adjudication_item(access=_access(request, code, Role.EXPERT), key=key)
        return Response(AdjudicationViewSerializer(selectors.adjudication_view(item=item)).data)

    @extend_schema(request=AdjudicationSerializer, responses=AdjudicationViewSerializer)
    def post(self, request, code, key):
        item = selectors.adjudication_item(access=_access(request, code, Role.EXPERT), key=key)
        data = validated(AdjudicationSerializer, request.data)
        services.adjudicate(item=item, by=request.user, decisions=data["decisions"], reason=data["reason"])
        return Response(AdjudicationViewSerializer(selectors.adjudication_view(item=item)).data)


class ResultsAPI(APIView):
    @extend_schema(responses=ResultsSerializer)
    def get(self, request, code):
        """The scoring data set (see scoring.selectors.analysis_rows), after unblinding only."""
        access = _access(request, code, Role.INVESTIGATOR, Role.STATISTICIAN)
        return Response(ResultsSerializer(selectors.results_for(access=access)).data)
