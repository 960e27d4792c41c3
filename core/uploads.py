"""Upload limits enforced while a request body streams in: nothing over the limit, and nothing from someone who
may not upload, is read into memory or written to a temporary file."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from .errors import ServiceError

# What a multipart body may hold besides the file: boundaries, part headers and the small form fields
# (site, clinical history) that travel with it.
FORM_ALLOWANCE = 1024 * 1024


class UploadTooLarge(ServiceError):
    status_code = 413
    code = "too_large"


class LimitedUploadHandler(FileUploadHandler):
    """Put first among a request's upload handlers (before its body is read, see `limit_upload`).

    - If `allowed()` says no, the body is not read at all: the parse ends at once with no data, and the
      view's own access check refuses the request.
    - A body declaring more than `max_bytes` (+ FORM_ALLOWANCE) is not read either.
    - A file that grows past `max_bytes` as it streams in is stopped there; the handlers after this one
      (Django's memory and temporary-file handlers) close and delete what they had.

    `refusal` then says why ("forbidden" or "too_large"); `raise_if_refused` turns it into the error.
    """

    def __init__(self, request=None, *, max_bytes: int | None = None, allowed: Callable[[], bool] | None = None):
        super().__init__(request)
        self.max_bytes = settings.CXR_MAX_DICOM_BYTES if max_bytes is None else max_bytes
        self.allowed = allowed
        self.refusal: str | None = None
        self.declared = 0  # the body's Content-Length
        self.received = 0  # file bytes seen so far, all files of the request together

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.declared = content_length
        if self.allowed is not None and not self.allowed():
            self.refusal = "forbidden"
        elif content_length > self.max_bytes + FORM_ALLOWANCE:
            self.refusal = "too_large"
        if self.refusal:
            # Returning the parse's result here means the body is never read, by this handler or another.
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.refusal = "too_large"
            # connection_reset: Django does not read the rest of the body either
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) makes the uploaded file

    def raise_if_refused(self) -> None:
        if self.refusal == "forbidden":
            raise PermissionDenied("You may not upload here.")
        if self.refusal == "too_large":
            size = f"{self.declared / 1e6:.1f} MB" if self.declared else "larger"
            raise UploadTooLarge(
                f"The upload is {size}; the largest file accepted is {self.max_bytes / 1e6:.0f} MB. "
                "Nothing was stored.",
                field="file",
            )


def limit_upload(request, *, max_bytes: int, allowed: Callable[[], bool] | None = None) -> LimitedUploadHandler:
    """Install a LimitedUploadHandler first on `request` (a Django HttpRequest or DRF's Request) and return it.

    Must run before anything reads request.POST, request.FILES or request.data: in a DRF view, in `initial()`
    before authentication, because the session's CSRF check reads the form (and so the whole body).
    """
    django_request = getattr(request, "_request", request)
    if hasattr(django_request, "_files"):
        raise RuntimeError("limit_upload() called after the request body was read")
    handler = LimitedUploadHandler(django_request, max_bytes=max_bytes, allowed=allowed)
    django_request.upload_handlers.insert(0, handler)
    return handler


class BodyLimitUploadHandler(LimitedUploadHandler):
    """For settings.FILE_UPLOAD_HANDLERS, first: settings.CXR_MAX_DICOM_BYTES on every request's body, so that
    no URL writes more than that to a temporary file (the CSRF middleware reads the form of any POST, before
    the view or its decorators can refuse it). The request then simply arrives without its files."""

    def __init__(self, request=None):
        super().__init__(request)
