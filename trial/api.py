"""REST API for trials, sites, members and cases (token or session auth). Thin: selectors and services. Lists
that grow with the trial (members, cases, allocations) come a page at a time: {count, next, previous, results}."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, paginated, validated
from core.uploads import limit_upload

from . import selectors, services, signatures
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
    SignatureSerializer,
    SiteSerializer,
    StagedImageSerializer,
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


def signed_proof(request) -> signatures.Reauthenticated:
    """An API call's electronic signature: re-authentication from its body ({password, code}), before the act's
    transaction (trial.signatures); every app's signed endpoints use it."""
    credentials = validated(SignatureSerializer, request.data)
    return signatures.reauthenticate(user=request.user, credentials=signatures.Credentials.from_data(credentials))


class TrialLockAPI(APIView):
    @extend_schema(request=SignatureSerializer, responses=TrialSerializer)
    def post(self, request, code):
        """Lock the trial, signed: the body carries the investigator's password and a code of their second factor."""
        trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
        locked = services.lock_trial(trial=trial, by=request.user, proof=signed_proof(request))
        return Response(TrialSerializer(locked).data)


class TrialUnblindingAPI(APIView):
    @extend_schema(request=SignatureSerializer, responses=TrialSerializer)
    def post(self, request, code):
        """Two-person unblinding, signed: an investigator's call asks, a statistician's (another person) approves."""
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR, Role.STATISTICIAN])
        trial = access.trial
        if selectors.pending_unblinding(access=access) is None:
            if not access.has(Role.INVESTIGATOR):
                raise PermissionDenied("An investigator asks for unblinding first; a statistician then approves it.")
            services.request_unblinding(trial=trial, by=request.user, proof=signed_proof(request))
            trial.refresh_from_db()
            return Response(TrialSerializer(trial).data, status=status.HTTP_202_ACCEPTED)
        if not access.has(Role.STATISTICIAN):
            raise PermissionDenied("Unblinding has been asked for: a statistician of the trial approves it.")
        return Response(TrialSerializer(services.approve_unblinding(trial=trial, by=request.user,
                                                                    proof=signed_proof(request))).data)


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


def _may_enrol(user, code: str) -> bool:
    try:
        access_for(user=user, code=code, roles=[Role.INVESTIGATOR])
    except PermissionDenied:
        return False
    return True


class CaseListAPI(APIView):
    # Multipart only: DRF's form and JSON parsers read a whole body into memory, whatever its size.
    parser_classes = [MultiPartParser]
    pagination_class = Pagination

    def initial(self, request, *args, **kwargs):
        if request.method == "POST":
            # Before authentication, because the session's CSRF check reads the form and so the body: from here
            # on nothing of it is read unless its sender may enrol in this trial, nor past the size limit.
            # Django's request, not DRF's: its user is the session's during the CSRF check (DRF's request.user
            # would authenticate again, recursively), and the token's once DRF has authenticated one.
            django_request = request._request
            self.upload_limit = limit_upload(request, max_bytes=settings.CXR_MAX_DICOM_BYTES,
                                             allowed=lambda: _may_enrol(django_request.user, kwargs["code"]))
        super().initial(request, *args, **kwargs)

    @extend_schema(responses=CaseSerializer(many=True))
    def get(self, request, code):
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
        return paginated(CaseSerializer, selectors.cases_for(access=access), request=request, view=self)

    @extend_schema(request={"multipart/form-data": CaseUploadSerializer},
                   responses={201: CaseSerializer, 202: StagedImageSerializer})
    def post(self, request, code):
        """Upload one DICOM file as a new case; a refused file gets a reason and nothing is stored."""
        access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])  # before the body is read
        form = request.data  # read here (or already by the CSRF check), through the upload limit
        self.upload_limit.raise_if_refused()
        data = validated(CaseUploadSerializer, form)
        upload = data["file"]
        if upload.size > settings.CXR_MAX_DICOM_BYTES:  # refuse before reading it into memory
            raise FileTooLarge(
                f"The file is {upload.size / 1e6:.1f} MB; the limit is {settings.CXR_MAX_DICOM_BYTES / 1e6:.0f} MB."
            )
        case = services.enrol_case(trial=access.trial, site=_site(access, data["site"]), by=request.user,
                                   data=upload.read(), filename=upload.name,
                                   clinical_history=data.get("clinical_history", ""))
        if case is None:  # a lateral (or another view) before any frontal image of its study: it waits for one
            return Response({"staged": True, "detail": "Stored; it joins its study's case when a frontal image of "
                                                       "the study arrives, or is screened out if none comes within "
                                                       f"{access.trial.settle_seconds} s."},
                            status=status.HTTP_202_ACCEPTED)
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
