"""Write licentric_sdk/_generated.py from the OpenAPI document the app publishes: a msgspec Struct per schema,
the table of operations, and a sync and an async resource class per tag with one typed method per operation.

Run it from the dev venv after changing a route: `.venv/bin/python sdk/python/generate.py`.
tests/python/sdk/test_sdk_coverage.py fails while the checked-in module differs from what this writes.
"""

from __future__ import annotations

import keyword
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TARGET = Path(__file__).parent / "licentric_sdk" / "_generated.py"
METHODS = ("get", "post", "put", "patch", "delete")
PAGE_PARAMETERS = ("limit", "starting_after", "ending_before")

# Where the name derived from the operationId and its tag (see method_name) reads badly.
NAMES: dict[str, tuple[str, str]] = {
    "getHealth": ("operations", "health"),
    "checkEntitlement": ("entitlements", "check"),
    "ingestUsageEvents": ("usage", "ingest"),
    "getUsage": ("usage", "query"),
    "getEntitlementSnapshot": ("entitlements", "snapshot"),
    "listEntitlementChanges": ("entitlements", "changes"),
}
# Names of inline schemas: the items of the ingest body.
INLINE_ITEMS = {"ingestUsageEvents": "UsageEvent"}
# The field that is a list's cursor when its objects have no `id`.
CURSORS = {"LicenseUser": "customer_id", "SigningKey": "kid", "CustomerEntitlements": "customer"}


def document() -> dict[str, Any]:
    """The document `GET /schema/openapi.json` answers, made without a database."""
    import msgspec

    from licentric.app import create_app
    from licentric.settings import Settings

    app = create_app(replace(Settings.from_env(), database_url="postgresql://unused"))
    return msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema()))


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") else word


def method_name(operation_id: str, tag: str) -> tuple[str, str]:
    """`listLicenses` under `licenses` → licenses.list; `changeLicensePolicy` → licenses.change_policy."""
    if operation_id in NAMES:
        return NAMES[operation_id]
    verb, *rest = snake(operation_id).split("_")
    plural, one = tag.split("_"), singular(tag).split("_")
    if rest in (plural, one):
        return tag, verb
    for noun in (plural, one):
        if rest[: len(noun)] == noun:
            return tag, "_".join([verb, *rest[len(noun) :]])
        if rest[-len(noun) :] == noun:
            return tag, "_".join([verb, *rest[: -len(noun)]])
    return tag, "_".join([verb, *rest])


def python_name(name: str) -> str:
    name = re.sub(r"\W", "_", name).lower()
    return name + "_" if keyword.iskeyword(name) else name


def ref_name(schema: dict[str, Any]) -> str:
    return schema["$ref"].rsplit("/", 1)[1]


def type_of(schema: dict[str, Any], request: bool) -> str:
    """The Python type of a schema. Enums are Literal in what the SDK sends and str in what it reads, so
    a value a newer server adds does not break an older SDK."""
    if "$ref" in schema:
        return ref_name(schema)
    if "oneOf" in schema or "anyOf" in schema:
        parts = [type_of(part, request) for part in schema.get("oneOf", schema.get("anyOf"))]
        return " | ".join(dict.fromkeys(parts))
    kinds = schema.get("type")
    if isinstance(kinds, list):
        parts = [type_of({**schema, "type": kind}, request) for kind in kinds if kind != "null"]
        return " | ".join([*parts, "None"] if "null" in kinds else parts)
    if kinds == "null":
        return "None"
    if kinds == "string":
        enum = [value for value in schema.get("enum", []) if value is not None]
        if enum and request:
            return "Literal[" + ", ".join(repr(value) for value in enum) + "]"
        return "_dt.datetime" if schema.get("format") == "date-time" else "str"
    if kinds == "integer":
        return "int"
    if kinds == "number":
        return "float"
    if kinds == "boolean":
        return "bool"
    if kinds == "array":
        return f"list[{type_of(schema['items'], request)}]" if "items" in schema else "list[Any]"
    if kinds == "object":
        values = schema.get("additionalProperties")
        return f"dict[str, {type_of(values, request)}]" if values else "dict[str, Any]"
    if not schema or kinds is None:
        return "Any"
    raise ValueError(f"no Python type for {schema}")


@dataclass
class Struct:
    name: str
    schema: dict[str, Any]
    request: bool

    def render(self) -> str:
        lines = [f"class {self.name}(msgspec.Struct, kw_only=True):"]
        title = self.schema.get("description")
        lines.append(
            f'    """{title}"""' if title and len(title) < 90 else f'    """The `{self.name}` schema."""'
        )
        required = set(self.schema.get("required", []))
        for name, prop in self.schema.get("properties", {}).items():
            if python_name(name) != name:
                raise ValueError(f"{self.name}.{name} is no Python name: give the struct field a rename")
            python_type = type_of(prop, self.request)
            if name in required:
                default = None
            elif self.request:
                python_type, default = f"{python_type} | UnsetType", "UNSET"
            elif "default" in prop:
                default = repr(prop["default"])
            elif python_type.startswith(("list[", "dict[")) and " | " not in python_type:
                default = f"msgspec.field(default_factory={python_type[:4]})"
            elif {"None", "Any"} & set(python_type.split(" | ")):
                default = "None"
            else:  # may be absent, and is never null
                python_type, default = f"{python_type} | UnsetType", "UNSET"
            lines.append(f"    {name}: {python_type}{' = ' + default if default else ''}")
        return "\n".join(lines)


@dataclass
class Parameter:
    name: str  # on the wire
    python: str
    python_type: str
    required: bool
    where: str  # path, query, header, body


@dataclass
class Method:
    operation_id: str
    http_method: str
    path: str
    resource: str
    name: str
    response: str
    item: str | None  # a paginated list's object type
    cursor: str | None
    parameters: list[Parameter] = field(default_factory=list)
    body: str | None = None  # how the body is built from the parameters

    def signature(self, asynchronous: bool) -> str:
        positional = [f"{p.python}: {p.python_type}" for p in self.parameters if p.where == "path"]
        keywords = [
            f"{p.python}: {p.python_type}"
            if p.required
            else f"{p.python}: {p.python_type} | UnsetType = UNSET"
            for p in self.parameters
            if p.where != "path"
        ]
        if self.http_method == "POST":
            keywords.append("idempotency_key: str | None = None")
        returns = f"{'AsyncPager' if asynchronous else 'Pager'}[{self.item}]" if self.item else self.response
        star = ["*"] if keywords else []
        prefix = "def" if self.item or not asynchronous else "async def"
        return f"{prefix} {self.name}(self, {', '.join([*positional, *star, *keywords])}) -> {returns}:"

    def call_arguments(self) -> str:
        def mapping(where: str) -> str | None:
            chosen = [p for p in self.parameters if p.where == where]
            if not chosen:
                return None
            return "{" + ", ".join(f"{p.name!r}: {p.python}" for p in chosen) + "}"

        arguments = [repr(self.operation_id)]
        for where in ("path", "query", "headers"):
            value = mapping("header" if where == "headers" else where)
            if value:
                arguments.append(f"{where}={value}")
        if self.body:
            arguments.append(f"body={self.body}")
        if self.http_method == "POST":
            arguments.append("idempotency_key=idempotency_key")
        return ", ".join(arguments)

    def render(self, asynchronous: bool) -> str:
        doc = f'        """`{self.http_method} {self.path}` ({self.operation_id})."""'
        if self.item:
            pager = "AsyncPager" if asynchronous else "Pager"
            call = f"return {pager}(self._transport, {self.call_arguments()}, cursor={self.cursor!r})"
        else:
            call = (
                f"return {'await ' if asynchronous else ''}self._transport.request({self.call_arguments()})"
            )
        return f"    {self.signature(asynchronous)}\n{doc}\n        {call}"


def build(doc: dict[str, Any]) -> tuple[list[Struct], list[Method]]:
    schemas = doc["components"]["schemas"]
    requests: set[str] = set()
    methods: list[Method] = []
    extra: list[Struct] = []
    for path, item in doc["paths"].items():
        for http_method in METHODS:
            if http_method not in item:
                continue
            op = item[http_method]
            resource, name = method_name(op["operationId"], op["tags"][0])
            success = next(v for k, v in sorted(op["responses"].items()) if k.startswith("2"))
            response_schema = success["content"]["application/json"]["schema"]
            response = type_of(response_schema, request=False)
            parameters = []
            listed = set(schemas.get(response, {}).get("properties", {}))
            paginated = {"data", "has_more"} <= listed and any(
                p["name"] == "starting_after" for p in op.get("parameters", [])
            )
            for p in op.get("parameters", []):
                if p["name"] == "Idempotency-Key":
                    continue
                parameters.append(
                    Parameter(
                        p["name"],
                        python_name(p["name"]),
                        type_of(p["schema"], request=True),
                        p["in"] == "path" or p.get("required", False),
                        p["in"],
                    )
                )
            body = None
            if "requestBody" in op:
                body_schema = op["requestBody"]["content"]["application/json"]["schema"]
                struct_schema = next(
                    (s for s in body_schema.get("oneOf", [body_schema]) if "$ref" in s), None
                )
                if struct_schema:
                    struct = ref_name(struct_schema)
                    requests.add(struct)
                    fields = schemas[struct].get("properties", {})
                    required = set(schemas[struct].get("required", []))
                    for field_name, prop in fields.items():
                        parameters.append(
                            Parameter(
                                field_name,
                                python_name(field_name),
                                type_of(prop, request=True),
                                field_name in required,
                                "body",
                            )
                        )
                    body = (
                        f"{struct}(" + ", ".join(f"{python_name(f)}={python_name(f)}" for f in fields) + ")"
                    )
                elif body_schema.get("type") == "array":
                    struct = INLINE_ITEMS[op["operationId"]]
                    extra.append(Struct(struct, body_schema["items"], request=True))
                    parameters.append(Parameter("events", "events", f"list[{struct}]", True, "body"))
                    body = "events"
                else:
                    parameters.append(Parameter("payload", "payload", "dict[str, Any]", True, "body"))
                    body = "payload"
            seen = [p.python for p in parameters]
            if len(seen) != len(set(seen)):
                raise ValueError(f"{op['operationId']}: two parameters share a name: {seen}")
            item_type = cursor = None
            if paginated:
                item_type = ref_name(schemas[response]["properties"]["data"]["items"])
                cursor = "id" if "id" in schemas[item_type]["properties"] else CURSORS[item_type]
            methods.append(
                Method(
                    op["operationId"],
                    http_method.upper(),
                    path,
                    resource,
                    name,
                    response,
                    item_type,
                    cursor,
                    parameters,
                    body,
                )
            )
    structs = [Struct(name, schema, name in requests) for name, schema in schemas.items()] + extra
    return structs, methods


def class_name(resource: str) -> str:
    return "".join(part.title() for part in resource.split("_")) + "Resource"


def render(doc: dict[str, Any]) -> str:
    structs, methods = build(doc)
    resources: dict[str, list[Method]] = {}
    for method in methods:
        resources.setdefault(method.resource, []).append(method)
    out = [
        '"""Generated by sdk/python/generate.py from the OpenAPI document of Licentric '
        f"{doc['info']['version']}.",
        'Do not edit: change the API, then run the generator."""',
        "",
        "from __future__ import annotations",
        "",
        "import datetime as _dt",
        "from dataclasses import dataclass",
        "from typing import Any, Literal",
        "",
        "import msgspec",
        "from msgspec import UNSET, UnsetType",
        "",
        "from licentric_sdk._resource import AsyncPager, AsyncResource, Pager, SyncResource",
        "",
        f"API_VERSION = {doc['info']['version']!r}",
        "",
        "",
    ]
    out += [struct.render() + "\n\n" for struct in structs]
    out += [
        "@dataclass(frozen=True)",
        "class Operation:",
        "    method: str",
        "    path: str",
        "    response: Any",
        "",
        "",
        "OPERATIONS: dict[str, Operation] = {",
        *(
            f"    {m.operation_id!r}: Operation({m.http_method!r}, {m.path!r}, {m.response}),"
            for m in methods
        ),
        "}",
        "",
        "# operationId → (client attribute, method name)",
        "METHODS: dict[str, tuple[str, str]] = {",
        *(f"    {m.operation_id!r}: ({m.resource!r}, {m.name!r})," for m in methods),
        "}",
        "",
        "",
    ]
    for asynchronous in (False, True):
        for resource, members in resources.items():
            prefix = "Async" if asynchronous else ""
            base = "AsyncResource" if asynchronous else "SyncResource"
            out.append(f"class {prefix}{class_name(resource)}({base}):")
            out.append(f'    """`client.{resource}`."""\n')
            out.append("\n\n".join(m.render(asynchronous) for m in members))
            out.append("\n\n")
        kind = "Async" if asynchronous else "Sync"
        out.append(f"class {kind}Resources:")
        out.append(f'    """Every resource of the API, as attributes of the {kind.lower()} client."""\n')
        out.append("    def __init__(self, transport: Any) -> None:")
        for resource in resources:
            out.append(f"        self.{resource} = {prefix}{class_name(resource)}(transport)")
        out.append("\n")
    return format_source("\n".join(out))


def format_source(source: str) -> str:
    ruff = [str(Path(sys.executable).parent / "ruff")]
    for args in (
        ["check", "--fix", "--quiet", "--stdin-filename", str(TARGET), "-"],
        ["format", "--stdin-filename", str(TARGET), "-"],
    ):
        done = subprocess.run([*ruff, *args], input=source, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 1) or not done.stdout:
            raise RuntimeError(f"ruff {args[0]} failed: {done.stderr}")
        source = done.stdout
    return source


if __name__ == "__main__":
    TARGET.write_text(render(document()))
    print(f"wrote {TARGET}")
