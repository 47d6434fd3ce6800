"""Every operation in the OpenAPI document carries examples, and every example is valid.

For each operation: each parameter has an example; a JSON request body's schema has examples;
the success response has examples (its JSON schema's, or the media type's own for text), unless it
is a binary file. Every example found anywhere in the document validates against its schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from gen_server.main import create_app
from gen_server.settings import Settings

SUCCESS = ("200", "201", "202", "204", "206")
BASE = "urn:soundry-openapi"


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("openapi")
    settings = Settings(data_dir=data_dir, dev_models=True)
    app = create_app(settings, redis_url="redis://127.0.0.1:1/0", ui=False)
    return app.openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield f"{method.upper()} {path}", op


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "array":
        return resolve(doc, schema["items"])
    return schema


def has_examples(obj: dict[str, Any]) -> bool:
    return bool(obj.get("examples") or "example" in obj)


def missing_examples(doc: dict[str, Any], op: dict[str, Any]) -> list[str]:
    missing = [
        f"parameter {p['name']}"
        for p in op.get("parameters", [])
        if not (has_examples(p) or has_examples(p.get("schema", {})))
    ]
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and not (has_examples(body) or has_examples(resolve(doc, body["schema"]))):
        missing.append("request body")
    code = next(c for c in SUCCESS if c in op["responses"])
    for media, content in op["responses"][code].get("content", {}).items():
        schema = content.get("schema", {})
        if schema.get("format") == "binary" or has_examples(content):
            continue
        if not (media == "application/json" and has_examples(resolve(doc, schema))):
            missing.append(f"{code} {media} response")
    return missing


def test_every_operation_has_examples(doc: dict[str, Any]) -> None:
    gaps = {name: gaps for name, op in operations(doc) if (gaps := missing_examples(doc, op))}
    print(f"\n{sum(1 for _ in operations(doc))} operations, {len(gaps)} without examples")
    assert not gaps, gaps


def schemas_with_examples(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any], list[Any]]]:
    """(location, schema, examples) for every schema or parameter in the document that has examples."""
    if isinstance(node, dict):
        examples = node.get("examples")
        if isinstance(examples, list) and examples:
            yield where, node, examples
        for key, value in node.items():
            yield from schemas_with_examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from schemas_with_examples(value, f"{where}/{i}")


def test_every_example_matches_its_schema(doc: dict[str, Any]) -> None:
    registry: Registry[Any] = Registry().with_resource(BASE, Resource.opaque(doc))
    checked = 0
    for where, node, examples in schemas_with_examples(doc):
        # a list under "examples" is always the JSON Schema keyword (OpenAPI's own examples are maps)
        schema = _rebase({k: v for k, v in node.items() if k != "examples"})
        validator = Draft202012Validator(schema, registry=registry)
        for example in examples:
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, f"example at {where} does not match its schema: {errors[:3]}"
            checked += 1
    print(f"\n{checked} examples validated against their schemas")
    assert checked >= 30


def _rebase(schema: Any) -> Any:
    """Point ``#/components/...`` references at the registered document."""
    if isinstance(schema, dict):
        return {k: (BASE + v if k == "$ref" and v.startswith("#") else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema
