"""The OpenAPI schema says what every endpoint of the trial, ai, reading and scoring APIs returns: no answer is a
bare object (`responses=dict`), no map is of unknown values, and lists that grow with the trial are paginated."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

APPS = ("trial.api", "ai.api", "reading.api", "scoring.api")
# Lists that grow with the trial come a page at a time ({count, next, previous, results}).
PAGINATED = {
    ("/api/trials/{code}/members/", "get"), ("/api/trials/{code}/cases/", "get"),
    ("/api/trials/{code}/allocations/", "get"), ("/api/trials/{code}/drafts/", "get"),
    ("/api/trials/{code}/scoring/items/", "get"), ("/api/trials/{code}/scoring/adjudication/", "get"),
    ("/api/trials/{code}/worklist/", "get"), ("/api/trials/{code}/signoff/", "get"),
}


@pytest.fixture(scope="module")
def generated():
    generator = SchemaGenerator()
    schema = generator.get_schema(request=None, public=True)
    ours = {(path, method.lower()) for path, _, method, view in generator.endpoints
            if view.cls.__module__ in APPS}
    return schema, ours


def _resolve(schema, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _untyped(schema, node: dict, where: str, seen: frozenset = frozenset()) -> list[str]:
    """Places in a response schema that say nothing of what they hold: an object with no properties, a map of
    unknown values."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _untyped(schema, _resolve(schema, node), where, seen | {name})
    found = []
    for key in ("allOf", "oneOf", "anyOf"):
        for i, part in enumerate(node.get(key, [])):
            found += _untyped(schema, part, f"{where}.{key}[{i}]", seen)
    if node.get("type") == "array":
        found += _untyped(schema, node.get("items", {}), f"{where}[]", seen)
    if node.get("type") == "object":
        extra = node.get("additionalProperties")
        if not node.get("properties") and not (isinstance(extra, dict) and extra):
            found.append(where)
        for name, prop in node.get("properties", {}).items():
            found += _untyped(schema, prop, f"{where}.{name}", seen)
        if isinstance(extra, dict) and extra:
            found += _untyped(schema, extra, f"{where}.*", seen)
    return found


def test_every_answer_of_the_apis_has_a_declared_shape(generated):
    schema, ours = generated
    assert len(ours) >= 30  # the endpoints were found
    untyped, checked = [], 0
    for path, method in sorted(ours):
        operation = schema["paths"][path][method]
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            content = response.get("content", {})
            assert content, f"{method.upper()} {path} {status}: no body declared"
            for media in content.values():
                checked += 1
                untyped += _untyped(schema, media["schema"], f"{method.upper()} {path} {status}")
    assert checked >= len(ours)
    assert not untyped, "Responses without a declared shape:\n" + "\n".join(untyped)


def test_lists_that_grow_with_the_trial_are_paginated(generated):
    schema, ours = generated
    assert PAGINATED <= ours
    for path, method in PAGINATED:
        ok = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        properties = _resolve(schema, ok)["properties"]
        assert {"count", "next", "previous", "results"} <= set(properties), path
        assert _resolve(schema, properties["results"])["type"] == "array", path
