"""The SDK covers the API the app publishes: the generated module is what the generator writes from the app's
current document (so a route added later fails here until `sdk/python/generate.py` runs), every operationId
is called by a sync and an async method, and every struct's fields and types are the document's."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from licentric_sdk import AsyncLicentric, Licentric, _generated

SDK = Path(__file__).parents[3] / "sdk" / "python"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("sdk_generate", SDK / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generator = load_generator()
DOCUMENT = generator.document()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = {
    op["operationId"]: (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if method in generator.METHODS
}


def test_the_generated_module_is_up_to_date():
    assert (SDK / "licentric_sdk" / "_generated.py").read_text() == generator.render(DOCUMENT), (
        "the API changed: run .venv/bin/python sdk/python/generate.py"
    )


def test_the_sdk_knows_every_operation_of_the_api_and_no_other():
    assert {op: (o.method, o.path) for op, o in _generated.OPERATIONS.items()} == OPERATIONS
    assert DOCUMENT["info"]["version"] == _generated.API_VERSION


class Recorder:
    """A transport that notes the operation each call makes and answers an empty last page."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def request(self, operation_id: str, **_: Any) -> Any:
        self.calls.append(operation_id)
        return SimpleNamespace(data=[], has_more=False)


class AsyncRecorder(Recorder):
    async def request(self, operation_id: str, **options: Any) -> Any:
        return Recorder.request(self, operation_id, **options)


def required_arguments(method: Any) -> tuple[list[Any], dict[str, Any]]:
    """Placeholders for a method's required parameters (the recorder never sends them)."""
    positional, keywords = [], {}
    for name, parameter in inspect.signature(method).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            continue
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            keywords[name] = "x"
        else:
            positional.append("x")
    return positional, keywords


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_every_operation_is_called_by_a_sync_and_an_async_method(operation_id):
    resource, name = _generated.METHODS[operation_id]
    sync, sync_transport = Licentric("lic_sk_unused"), Recorder()
    method = getattr(getattr(sync, resource), name)
    method.__self__._transport = sync_transport
    args, kwargs = required_arguments(method)
    answer = method(*args, **kwargs)
    if hasattr(answer, "pages"):
        assert list(answer) == []
    assert sync_transport.calls == [operation_id]

    asynchronous, async_transport = AsyncLicentric("lic_sk_unused"), AsyncRecorder()
    method = getattr(getattr(asynchronous, resource), name)
    method.__self__._transport = async_transport

    async def call() -> None:
        answer = method(*args, **kwargs)
        if hasattr(answer, "pages"):
            assert [item async for item in answer] == []
        else:
            await answer

    asyncio.run(call())
    assert async_transport.calls == [operation_id]


def normal(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A schema reduced to what the SDK's types must agree on: JSON types, date-time formats, references and
    items. (Enums: the SDK sends Literal values and reads plain strings, so new values do not break it.)"""
    if "$ref" in schema:
        return ("ref", schema["$ref"].rsplit("/", 1)[1])
    if "oneOf" in schema or "anyOf" in schema:
        return frozenset(
            item for part in schema.get("oneOf", schema.get("anyOf")) for item in _flat(normal(part, defs))
        )
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return frozenset(item for kind in kinds for item in _flat(normal({**schema, "type": kind}, defs)))
    if kinds == "array":
        return ("array", normal(schema.get("items", {}), defs))
    if kinds == "string":
        return ("string", schema.get("format") if schema.get("format") == "date-time" else None)
    if kinds == "object":
        return ("object",)
    return (kinds,) if kinds else ("any",)


def _flat(value: Any) -> frozenset[Any]:
    return value if isinstance(value, frozenset) else frozenset([value])


def struct_type(info: Any) -> Any:
    """A field's msgspec type reduced as `normal` reduces a schema (msgspec leaves UNSET out of unions)."""
    mi = msgspec.inspect
    if isinstance(info, mi.UnionType):
        return frozenset(item for member in info.types for item in _flat(struct_type(member)))
    simple = {
        mi.StrType: ("string", None),
        mi.LiteralType: ("string", None),
        mi.DateTimeType: ("string", "date-time"),
        mi.IntType: ("integer",),
        mi.FloatType: ("number",),
        mi.BoolType: ("boolean",),
        mi.NoneType: ("null",),
        mi.DictType: ("object",),
        mi.AnyType: ("any",),
    }
    if type(info) in simple:
        return simple[type(info)]
    if isinstance(info, mi.ListType):
        return ("array", struct_type(info.item_type))
    if isinstance(info, mi.StructType):
        return ("ref", info.cls.__name__)
    raise AssertionError(f"unexpected type {info}")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_struct_has_the_fields_and_types_of_its_schema(name):
    fields = msgspec.inspect.type_info(getattr(_generated, name)).fields
    theirs = SCHEMAS[name]
    assert [f.encode_name for f in fields] == list(theirs.get("properties", {}))
    assert {f.encode_name for f in fields if f.required} == set(theirs.get("required", []))
    for field in fields:
        expected = normal(theirs["properties"][field.encode_name], SCHEMAS)
        assert _flat(struct_type(field.type)) == _flat(expected), field.encode_name


def test_enums_the_sdk_sends_are_the_documents():
    create = msgspec.inspect.type_info(_generated.BudgetCreate).fields
    period = next(f for f in create if f.name == "period").type
    assert set(period.values) == set(SCHEMAS["BudgetCreate"]["properties"]["period"]["enum"])
