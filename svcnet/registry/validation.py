"""Validation shared by every kind: names, labels, annotations, object metadata.

Pure functions returning lists of `FieldError` with Kubernetes' field paths and message texts
(k8s.io/apimachinery/pkg/util/validation and pkg/api/validation/objectmeta.go).
"""

from __future__ import annotations

import re

from svcnet.api.errors import FieldError, forbidden, invalid_value, required

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"

_DNS1123_LABEL = re.compile("^" + DNS1123_LABEL_FMT + "$")
_DNS1123_SUBDOMAIN = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_DNS1035_LABEL = re.compile("^" + DNS1035_LABEL_FMT + "$")
_QUALIFIED_NAME = re.compile("^" + QUALIFIED_NAME_FMT + "$")
_LABEL_VALUE = re.compile("^" + LABEL_VALUE_FMT + "$")


def _regex_error(msg: str, fmt: str, examples: list[str]) -> str:
    s = msg + " (e.g. "
    s += ",  or ".join(f"'{e}'" for e in examples)
    return s + f", regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT, ["my-name", "123-abc"]))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT, ["example.com"]))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errs.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT, ["my-name", "abc-123"]))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and a name part."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = []
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [_regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character", QUALIFIED_NAME_FMT,
            ["MyName", "my.name", "123-abc"]) + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME.match(name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character", QUALIFIED_NAME_FMT,
            ["MyName", "my.name", "123-abc"]))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT, ["MyValue", "my_value", "12345"]))
    return errs


def validate_labels(labels: object, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    for k, v in labels.items():
        for m in is_qualified_name(k):
            errs.append(invalid_value(path, k, m))
        for m in is_label_value(v if isinstance(v, str) else str(v)):
            errs.append(invalid_value(path, v, m))
    return errs


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_annotations(annotations: object, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(annotations, dict):
        return errs
    total = 0
    for k, v in annotations.items():
        for m in is_qualified_name(k.lower()):
            errs.append(invalid_value(path, k, m))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(FieldError(("Too long", "FieldValueTooLong"), path,
                               detail=f"must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    return errs


NAME_RULES = {
    "dns1123-label": is_dns1123_label,
    "dns1123-subdomain": is_dns1123_subdomain,
    "dns1035-label": is_dns1035_label,
}


def validate_object_meta(meta: dict, namespaced: bool, name_rule: str) -> list[FieldError]:
    """ValidateObjectMeta: name (or generateName), namespace presence, labels, annotations."""
    errs: list[FieldError] = []
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        errs.append(required("metadata.name", "name or generateName is required"))
    elif name:
        for m in NAME_RULES[name_rule](name):
            errs.append(invalid_value("metadata.name", name, m))
    if meta.get("generateName"):
        gen = meta["generateName"]
        # generateName is checked with a random suffix in mind: only the prefix's form matters.
        prefix_errs = NAME_RULES[name_rule](gen.rstrip("-") or "a") if not name else []
        for m in prefix_errs:
            errs.append(invalid_value("metadata.generateName", gen, m))
    if namespaced:
        if not meta.get("namespace"):
            errs.append(required("metadata.namespace"))
    elif meta.get("namespace"):
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "metadata.annotations")
    return errs


IMMUTABLE_META = ("name", "namespace", "uid", "creationTimestamp")


def validate_object_meta_update(new: dict, old: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in IMMUTABLE_META:
        if new.get(f) != old.get(f):
            errs.append(invalid_value(f"metadata.{f}", new.get(f), "field is immutable"))
    return errs
