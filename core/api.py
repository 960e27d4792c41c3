"""What every app's API shares: service refusals as JSON, input validation, pagination of lists that grow."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError


def exception_handler(exc, context):
    """Service refusals become clear JSON errors, {"detail", "code", "field", …extra}, with the refusal's status;
    Django's PermissionDenied (raised by selectors) keeps its message."""
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        body.update(exc.extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


def validated(serializer_class, data, **kwargs) -> dict:
    """The validated data of an input serializer; a 400 with the field errors otherwise."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class Pagination(LimitOffsetPagination):
    """?limit=&offset= (default and maximum stated), answered as {count, next, previous, results}."""

    default_limit = 100
    max_limit = 1000


def paginated(serializer_class, rows, *, request, view, context: dict | None = None,
              extra: dict | None = None) -> Response:
    """One page of `rows` (a queryset or a list), shaped by `serializer_class`; `extra`: fields about the whole
    list added beside the page (e.g. a worklist's done and total)."""
    paginator = Pagination()
    page = paginator.paginate_queryset(rows, request, view=view)
    data = serializer_class(page, many=True, context={"request": request, **(context or {})}).data
    response = paginator.get_paginated_response(data)
    response.data.update(extra or {})
    return response
