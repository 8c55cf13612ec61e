"""The OpenAPI v2 (Swagger 2.0) document of the served API: GET /openapi/v2.

Theory of operation
-------------------
kubectl 1.32 reads v3 (svcnet.api.openapi) for almost everything, but one path still needs v2:
with its default `--validate=strict`, create/apply/replace ask the v3 documents whether the
server validates fields itself (fieldValidation) for the object's kind, and for a `kind: List`
the answer is always no (cli-runtime's queryParamVerifierV3 says so without looking). kubectl
then validates every item of the List on the client against the v2 definitions
(kubectl/pkg/validation schemaValidation.validateList); without /openapi/v2 every such command
fails with "error validating data: the server could not find the requested resource".

The document is derived from the v3 one, as kube-apiserver derives both from the same
definitions: every schema of data/openapi-schemas.json under `#/definitions/` and the paths of
every group version, converted with these rules:
  - `{"allOf": [{"$ref": X}], ...}` (v3's way to give a reference siblings) -> `{"$ref": X, ...}`
  - `oneOf` (IntOrString, Quantity) -> `type: string` (their v2 form; kubectl's validator
    accepts any value for a string);
  - every `default` is dropped (kube-openapi handler.PruneDefaults);
  - a requestBody becomes the `body` parameter and sets `consumes`; response content types
    become `produces`; a parameter's `schema.type` becomes its `type`.

Served as kube-openapi's handler serves it: JSON by default, or the gnostic protobuf
(`openapi_v2.Document`, what kubectl asks for and decodes with proto.Unmarshal; JSON is
useless to it) when the Accept header prefers `application/com.github.proto-openapi.spec.v2
[@.]v1.0+protobuf`; `Etag` is the quoted upper-case hex SHA-512 of the JSON bytes for both, an
If-None-Match on it answers 304, nothing acceptable answers 406. Both bodies are built on first
request and cached (about 0.5 MB each); the API server's memory does not grow with the objects.

The protobuf encoder below is table-driven: each gnostic message maps its JSON keys to field
numbers, maps (definitions, properties, paths, responses) become repeated {name=1, value=2}
entries, `x-` keys become NamedAny vendor extensions whose value is YAML text (JSON is YAML),
oneof wrappers pick their branch from the value. Encoding follows proto3: zero scalars are not
written, fields go out in number order.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from svcnet.api import openapi
from svcnet.api.resources import RESOURCES

JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_PROTOBUF_DEPRECATED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
_DEFINITIONS = "#/definitions/"


# ---- v3 -> v2 -------------------------------------------------------------------------------

def _ref(v3_ref: str) -> str:
    return _DEFINITIONS + v3_ref.removeprefix("#/components/schemas/")


def schema(node: dict) -> dict:
    """The v2 form of a v3 schema (see the rules above)."""
    out: dict = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key == "allOf" and len(value) == 1 and "$ref" in value[0]:
            out["$ref"] = _ref(value[0]["$ref"])
        elif key == "$ref":
            out["$ref"] = _ref(value)
        elif key == "properties":
            out[key] = {name: schema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = schema(value)
        elif key == "allOf":
            out[key] = [schema(s) for s in value]
        elif key == "oneOf":
            out.setdefault("type", "string")
        else:
            out[key] = value
    return dict(sorted(out.items()))


def _parameter(p: dict) -> dict:
    out = {k: v for k, v in p.items() if k != "schema"}
    out.update(p["schema"])
    return dict(sorted(out.items()))


def _operation(op: dict) -> dict:
    out = {k: v for k, v in op.items() if k not in ("requestBody", "parameters", "responses")}
    params = []
    body = op.get("requestBody")
    consumes = ["*/*"]
    if body is not None:
        consumes = list(body["content"])
        param = {"in": "body", "name": "body",
                 "schema": schema(next(iter(body["content"].values()))["schema"])}
        if body.get("required"):
            param["required"] = True
        params.append(param)
    params += [_parameter(p) for p in op.get("parameters", ())]
    produces: list[str] = []
    responses = {}
    for code, response in op["responses"].items():
        r = {"description": response["description"]}
        content = response.get("content")
        if content:
            produces += [t for t in content if t not in produces]
            r["schema"] = schema(next(iter(content.values()))["schema"])
        responses[code] = r
    out.update(consumes=consumes, produces=produces, responses=responses, schemes=["https"])
    if params:
        out["parameters"] = params
    return dict(sorted(out.items()))


def _path_item(item: dict) -> dict:
    return {method: ([_parameter(p) for p in value] if method == "parameters"
                     else _operation(value))
            for method, value in item.items()}


def build() -> dict:
    """The v2 document as a dict."""
    paths: dict[str, dict] = {}
    for r in RESOURCES:
        paths.update(openapi.resource_paths(r))
    return {
        "definitions": {name: schema(s) for name, s in sorted(openapi.SCHEMAS.items())},
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": {path: _path_item(item) for path, item in sorted(paths.items())},
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                "in": "header", "name": "authorization",
                                                "type": "apiKey"}},
        "swagger": "2.0",
    }


@cache
def document_json() -> bytes:
    return json.dumps(build(), separators=(",", ":"), ensure_ascii=False).encode()


@cache
def document_protobuf() -> bytes:
    return to_protobuf(json.loads(document_json()))


@cache
def etag() -> str:
    """The quoted ETag of both forms: upper-case hex SHA-512 of the JSON bytes."""
    return '"' + hashlib.sha512(document_json()).hexdigest().upper() + '"'


_OFFERS = (("application", "json", JSON, document_json),
           ("application", _PROTOBUF_DEPRECATED.split("/")[1], PROTOBUF, document_protobuf),
           ("application", PROTOBUF.split("/")[1], PROTOBUF, document_protobuf))


def negotiate(accept: str):
    """(content type, body function) for an Accept header, as kube-openapi picks them (the
    clauses by quality, then specificity; within a clause JSON first), or None: answer 406."""
    clauses = []
    for index, part in enumerate((accept or "*/*").split(",")):
        fields = [f.strip() for f in part.split(";")]
        type_, _, subtype = fields[0].partition("/")
        q = 1.0
        for f in fields[1:]:
            name, _, value = f.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and type_:
            clauses.append((-q, subtype == "*", type_ == "*", index, type_, subtype or "*"))
    for *_, type_, subtype in sorted(clauses):
        for offer_type, offer_subtype, content_type, body in _OFFERS:
            if type_ in (offer_type, "*") and subtype in (offer_subtype, "*"):
                return content_type, body
    return None


# ---- the gnostic protobuf encoder -----------------------------------------------------------

STR, BOOL, ANY = "string", "bool", "any"

# message -> {JSON key: (field number, type)}; a type in a list is a repeated field; "x-" is
# the field of the message's vendor extensions (repeated NamedAny).
_MESSAGES: dict[str, dict[str, tuple]] = {
    "Document": {"swagger": (1, STR), "info": (2, "Info"), "host": (3, STR),
                 "basePath": (4, STR), "schemes": (5, [STR]), "consumes": (6, [STR]),
                 "produces": (7, [STR]), "paths": (8, "Paths"),
                 "definitions": (9, "Definitions"), "security": (12, ["SecurityRequirement"]),
                 "securityDefinitions": (13, "SecurityDefinitions"), "x-": (16,)},
    "Info": {"title": (1, STR), "version": (2, STR), "description": (3, STR), "x-": (7,)},
    "PathItem": {"$ref": (1, STR), "get": (2, "Operation"), "put": (3, "Operation"),
                 "post": (4, "Operation"), "delete": (5, "Operation"),
                 "options": (6, "Operation"), "head": (7, "Operation"),
                 "patch": (8, "Operation"), "parameters": (9, ["ParametersItem"]), "x-": (10,)},
    "Operation": {"tags": (1, [STR]), "summary": (2, STR), "description": (3, STR),
                  "operationId": (5, STR), "produces": (6, [STR]), "consumes": (7, [STR]),
                  "parameters": (8, ["ParametersItem"]), "responses": (9, "Responses"),
                  "schemes": (10, [STR]), "deprecated": (11, BOOL), "x-": (13,)},
    "JsonReference": {"$ref": (1, STR), "description": (2, STR)},
    "BodyParameter": {"description": (1, STR), "name": (2, STR), "in": (3, STR),
                      "required": (4, BOOL), "schema": (5, "Schema"), "x-": (6,)},
    "QueryParameterSubSchema": {"required": (1, BOOL), "in": (2, STR), "description": (3, STR),
                                "name": (4, STR), "type": (6, STR), "format": (7, STR),
                                "uniqueItems": (20, BOOL), "x-": (23,)},
    "PathParameterSubSchema": {"required": (1, BOOL), "in": (2, STR), "description": (3, STR),
                               "name": (4, STR), "type": (5, STR), "format": (6, STR),
                               "uniqueItems": (19, BOOL), "x-": (22,)},
    "Response": {"description": (1, STR), "schema": (2, "SchemaItem"), "x-": (5,)},
    "Schema": {"$ref": (1, STR), "format": (2, STR), "title": (3, STR), "description": (4, STR),
               "default": (5, ANY), "required": (19, [STR]), "enum": (20, [ANY]),
               "additionalProperties": (21, "AdditionalPropertiesItem"),
               "type": (22, "TypeItem"), "items": (23, "ItemsItem"), "allOf": (24, ["Schema"]),
               "properties": (25, "Properties"), "readOnly": (27, BOOL), "x-": (31,)},
    "ApiKeySecurity": {"type": (1, STR), "name": (2, STR), "in": (3, STR),
                       "description": (4, STR), "x-": (5,)},
}
# map message -> (entry field, value type, vendor-extension field or None)
_MAPS = {"Definitions": (1, "Schema", None), "Properties": (1, "Schema", None),
         "Paths": (2, "PathItem", 1), "Responses": (1, "ResponseValue", 2),
         "SecurityRequirement": (1, "StringArray", None),
         "SecurityDefinitions": (1, "SecurityDefinitionsItem", None)}
# message whose only field (1, repeated) holds the JSON value, or the items of a JSON list
_WRAPPERS = {"TypeItem": STR, "StringArray": STR, "ItemsItem": "Schema"}
# oneof message -> its branch (field number, type) for a value
_ONEOFS = {
    "ParametersItem": lambda v: (2, "JsonReference") if "$ref" in v else (1, "Parameter"),
    "Parameter": lambda v: (1, "BodyParameter") if v.get("in") == "body"
    else (2, "NonBodyParameter"),
    "NonBodyParameter": lambda v: {"query": (3, "QueryParameterSubSchema"),
                                   "path": (4, "PathParameterSubSchema")}[v["in"]],
    "ResponseValue": lambda v: (2, "JsonReference") if "$ref" in v else (1, "Response"),
    "SchemaItem": lambda v: (1, "Schema"),
    "AdditionalPropertiesItem": lambda v: (2, BOOL) if isinstance(v, bool) else (1, "Schema"),
    "SecurityDefinitionsItem": lambda v: {"apiKey": (2, "ApiKeySecurity")}[v["type"]],
}


def to_protobuf(document: dict) -> bytes:
    """The gnostic `openapi_v2.Document` bytes of a Swagger 2.0 document (a dict as JSON
    decodes it). Raises KeyError for a key or a parameter location the table lacks."""
    return _message("Document", document)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _any(number: int, value) -> bytes:
    """An `Any` {yaml=2}: the value's YAML text."""
    return _len(number, _len(2, json.dumps(value, ensure_ascii=False).encode()))


def _field(number: int, type_, value, always: bool = False) -> bytes:
    """One field; proto3 leaves out a zero scalar unless `always` (repeated, oneof)."""
    if type_ == STR:
        return _len(number, value.encode()) if value or always else b""
    if type_ == BOOL:
        return _varint(number << 3) + (b"\x01" if value else b"\x00") if value or always else b""
    if type_ == ANY:
        return _any(number, value)
    return _len(number, _message(type_, value))


def _named_any(number: int, name: str, value) -> bytes:
    return _len(number, _len(1, name.encode()) + _any(2, value))


def _message(name: str, value) -> bytes:
    if name in _ONEOFS:  # the chosen branch is written even when zero
        return _field(*_ONEOFS[name](value), value, True)
    if name in _WRAPPERS:
        items = value if isinstance(value, list) else [value]
        return b"".join(_field(1, _WRAPPERS[name], v, True) for v in items)
    if name in _MAPS:
        entry, value_type, ext = _MAPS[name]
        parts = []
        for key, v in value.items():
            if ext is not None and key.startswith("x-"):
                parts.append((ext, _named_any(ext, key, v)))
            else:
                parts.append((entry, _len(entry, _len(1, key.encode()) +
                                         _field(2, value_type, v))))
        return b"".join(p for _, p in sorted(parts, key=lambda p: p[0]))
    fields = _MESSAGES[name]
    parts = []
    for key, v in value.items():
        if key.startswith("x-"):
            number = fields["x-"][0]
            parts.append((number, _named_any(number, key, v)))
            continue
        number, type_ = fields[key]
        if isinstance(type_, list):
            parts += [(number, _field(number, type_[0], item, True)) for item in v]
        else:
            parts.append((number, _field(number, type_, v)))
    return b"".join(p for _, p in sorted(parts, key=lambda p: p[0]))
