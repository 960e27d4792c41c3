"""REST API for trials, sites, members and cases (token or session auth). Thin: selectors and services. Lists
that grow with the trial (members, cases, allocations) come a page at a time: {count, next, previous, results}."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, paginated, validated

from . import selectors, services
from .access import Access, access_for
from .errors import FileTooLarge
from .models import Invitation, Role
from .serializers import (
    AllocationSerializer,
    CaseSerializer,
    CaseUploadSerializer,
    InvitationSerializer,
    InviteSerializer,
    MembershipSerializer,
    SiteSerializer,
    TransitionSerializer,
    TrialCreateSerializer,
    TrialSerializer,
    TrialUpdateSerializer,
)


def _site(access: Access, code: str | None):
    site = selectors.site_by_code(access=access, code=code) if code else None
    if code and site is None:
        raise ValidationError({"site": f"No site “{code}” in this trial."})
    return site


class TrialListAPI(APIView):
    @extend_schema(responses=TrialSerializer(many=True))
    def get(self, request):
        return Response(TrialSerializer(selectors.trials_for_user(user=request.user), many=True).data)

    @extend_schema(request=TrialCreateSerializer, responses={201: TrialSerializer})
    def post(self, request):
        trial = services.create_trial(by=request.user, **validated(TrialCreateSerializer, request.data))
        return Response(TrialSerializer(trial).data, status=status.HTTP_201_CREATED)


class TrialDetailAPI(APIView):
    @extend_schema(responses=TrialSerializer)
    def get(self, request, code):
        return Response(TrialSerializer(access_for(user=request.user, code=code).trial).data)

    @extend_schema(request=TrialUpdateSerializer, responses=TrialSerializer)
    def patch(self, request, code):
        trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
        data = validated(TrialUpdateSerializer, request.data)
        return Response(TrialSerializer(services.update_trial_settings(trial=trial, by=request.user, **data)).data)


class TrialTransitionAPI(APIView):
    @extend_schema(request=TransitionSerializer, responses=TrialSerializer)
    def post(self, request, code):
        trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
        data = validated(TransitionSerializer, request.data)
        return Response(TrialSerializer(services.transition_trial(trial=trial, by=request.user, to=data["to"])).data)


class SiteListAPI(APIView):
    @extend_schema(responses=SiteSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code)
        return Response(SiteSerializer(selectors.sites_for(access=access), many=True).data)

    @extend_schema(request=SiteSerializer, responses={201: SiteSerializer})
    def post(self, request, code):
        trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
        data = validated(SiteSerializer, request.data)
        site = services.add_site(trial=trial, by=request.user, code=data["code"], name=data["name"])
        return Response(SiteSerializer(site).data, status=status.HTTP_201_CREATED)


class MemberListAPI(APIView):
    pagination_class = Pagination

    @extend_schema(responses=MembershipSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        return paginated(MembershipSerializer, selectors.members_for(access=access), request=request, view=self)

    @extend_schema(request=InviteSerializer, responses={201: MembershipSerializer, 202: InvitationSerializer})
    def post(self, request, code):
        """Add a known user (by e-mail) at once, or send an invitation (202)."""
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        data = validated(InviteSerializer, request.data)
        result = services.invite_member(trial=access.trial, by=request.user, email=data["email"], role=data["role"],
                                        site=_site(access, data.get("site")),
                                        accept_url=lambda token: request.build_absolute_uri(f"/invitations/{token}/"))
        if isinstance(result, Invitation):
            return Response(InvitationSerializer(result).data, status=status.HTTP_202_ACCEPTED)
        return Response(MembershipSerializer(result).data, status=status.HTTP_201_CREATED)


class CaseListAPI(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    pagination_class = Pagination

    @extend_schema(responses=CaseSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        return paginated(CaseSerializer, selectors.cases_for(access=access), request=request, view=self)

    @extend_schema(request={"multipart/form-data": CaseUploadSerializer}, responses={201: CaseSerializer})
    def post(self, request, code):
        """Upload one DICOM file as a new case; a refused file gets a reason and nothing is stored."""
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        data = validated(CaseUploadSerializer, request.data)
        upload = data["file"]
        if upload.size > settings.CXR_MAX_DICOM_BYTES:  # refuse before reading it into memory
            raise FileTooLarge(
                f"The file is {upload.size / 1e6:.1f} MB; the limit is {settings.CXR_MAX_DICOM_BYTES / 1e6:.0f} MB."
            )
        case = services.enrol_case(trial=access.trial, site=_site(access, data["site"]), by=request.user,
                                   data=upload.read(), filename=upload.name,
                                   clinical_history=data.get("clinical_history", ""))
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseDetailAPI(APIView):
    @extend_schema(responses=CaseSerializer)
    def get(self, request, code, case_code):
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        return Response(CaseSerializer(selectors.case_for(access=access, code=case_code)).data)


class AllocationListAPI(APIView):
    pagination_class = Pagination

    @extend_schema(responses=AllocationSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        return paginated(AllocationSerializer, selectors.allocations_for(access=access), request=request, view=self)
