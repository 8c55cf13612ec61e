"""Kubernetes API errors: field errors and `metav1.Status` bodies.

Every non-2xx answer of the API server is a `Status` built here, with the code, reason,
details and message text that kube-apiserver uses (k8s.io/apimachinery/pkg/api/errors and
pkg/util/validation/field). kubectl prints these messages verbatim, so the texts matter.

Validation code returns lists of `FieldError`; `invalid()` turns them into one 422 Status with
one cause per error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Field error types: (type string used in the message, StatusCause reason).
REQUIRED = ("Required value", "FieldValueRequired")
INVALID = ("Invalid value", "FieldValueInvalid")
NOT_SUPPORTED = ("Unsupported value", "FieldValueNotSupported")
DUPLICATE = ("Duplicate value", "FieldValueDuplicate")
FORBIDDEN = ("Forbidden", "FieldValueForbidden")
TOO_LONG = ("Too long", "FieldValueTooLong")
TOO_MANY = ("Too many", "FieldValueTooMany")
NOT_FOUND = ("Not found", "FieldValueNotFound")
TYPE_INVALID = ("Invalid value", "FieldValueTypeInvalid")
INTERNAL = ("Internal error", "InternalError")

_OMIT = object()
# Types whose message never shows the bad value (field/errors.go ErrorBody).
_VALUELESS = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}


def go_value(value: Any) -> str:
    """Format a bad value the way field.Error does with %v / %q."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        # []string{"a", "b"} is printed by %#v; Kubernetes mostly passes joined strings.
        return "[]string{" + ", ".join(go_value(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True)


@dataclass
class FieldError:
    """One validation failure at a field path (field.Error)."""

    type: tuple[str, str]
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        if self.type in _VALUELESS or self.value is _OMIT:
            s = self.type[0]
        else:
            s = f"{self.type[0]}: {go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def message(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        return {"reason": self.type[1], "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, path, detail=detail)


def invalid_value(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, path, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError(NOT_SUPPORTED, path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, path, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, path, detail=detail)


def too_long(path: str, value: Any, max_len: int) -> FieldError:
    return FieldError(TOO_LONG, path, value, f"may not be more than {max_len} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError(TOO_MANY, path, actual, f"must have at most {max_items} items")


@dataclass
class APIError(Exception):
    """An error that the API server answers with a Status body."""

    code: int
    reason: str
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]
        if self.details:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str, causes: list | None = None) -> dict:
    d: dict = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    if causes:
        d["causes"] = causes
    return d


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    _details(name, group, resource))


def already_exists(resource: str, group: str, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                    _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str = "") -> APIError:
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                    _details(name, group, resource))


def invalid(kind: str, group: str, name: str, errs: list[FieldError]) -> APIError:
    qkind = f"{kind}.{group}" if group else kind
    if len(errs) == 1:
        agg = errs[0].message()
    else:
        agg = "[" + ", ".join(e.message() for e in errs) + "]"
    return APIError(422, "Invalid", f'{qkind} "{name}" is invalid: {agg}',
                    _details(name, group, kind, [e.cause() for e in errs]))


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden_error(message: str) -> APIError:
    return APIError(403, "Forbidden", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large(message: str = "the request entity is too large") -> APIError:
    return APIError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str, supported: list[str]) -> APIError:
    return APIError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: {", ".join(supported)}')


def not_acceptable(message: str) -> APIError:
    return APIError(406, "NotAcceptable", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def resource_not_found() -> APIError:
    """404 for a path that names no served resource (kube-apiserver's default 404)."""
    return APIError(404, "NotFound", "the server could not find the requested resource",
                    {})
