"""The OpenAPI schema of the whole API builds without a warning and validates (drf-spectacular)."""
from __future__ import annotations

from django.core.management import call_command


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))  # raises on a warning
    text = out.read_text()
    assert "/api/reads/{read_id}/autosave/" in text and "ReadPayload" in text
