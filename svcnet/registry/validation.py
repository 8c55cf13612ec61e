"""Validation shared by every kind: names, labels, annotations, object metadata.

Pure functions returning lists of `FieldError` with Kubernetes' field paths and message texts
(k8s.io/apimachinery/pkg/util/validation and pkg/api/validation/objectmeta.go).
"""

from __future__ import annotations

import ipaddress
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


# Ports and IP addresses (k8s.io/apimachinery/pkg/util/validation: validation.go, ip.go; and
# ValidateNonSpecialIP from pkg/apis/core/validation), as of Kubernetes 1.32.

def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


_PORT_NAME_CHARSET = re.compile(r"[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


def is_valid_port_name(name: str) -> list[str]:
    """IsValidPortName: an IANA_SVC_NAME, every rule reported separately."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


_IPV4_SLOPPY = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")


def _parse_ipv4_sloppy(value: str) -> ipaddress.IPv4Address | None:
    m = _IPV4_SLOPPY.fullmatch(value)
    if not m or any(int(part) > 255 for part in m.groups()):
        return None
    return ipaddress.IPv4Address(bytes(int(part) for part in m.groups()))


def _parse_ipv6_sloppy(value: str) -> ipaddress.IPv6Address | None:
    if "%" in value:  # Go's ParseIP takes no zone
        return None
    head, sep, tail = value.rpartition(":")
    if "." in tail:  # an embedded IPv4 tail, itself parsed sloppily
        v4 = _parse_ipv4_sloppy(tail)
        if v4 is None or not sep:
            return None
        b = v4.packed
        value = f"{head}:{b[0] << 8 | b[1]:x}:{b[2] << 8 | b[3]:x}"
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        return None


def _parse_ip_raw(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return _parse_ipv4_sloppy(value) or (_parse_ipv6_sloppy(value) if ":" in value else None)


def parse_ip_sloppy(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """netutils.ParseIPSloppy (Go 1.16's net.ParseIP): IPv4 parts may have leading zeros (read
    as decimal), IPv6 may end in an IPv4 address, zones are refused. An IPv4-mapped IPv6
    address comes back as IPv4, as Go's IP.To4() sees it."""
    ip = _parse_ip_raw(value) if isinstance(value, str) else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_family(value: str) -> str | None:
    """"IPv4" or "IPv6" for a valid address (netutils.IsIPv4String / IsIPv6String), else None."""
    ip = parse_ip_sloppy(value)
    return None if ip is None else f"IPv{ip.version}"


def is_valid_ip(value: str) -> list[str]:
    if parse_ip_sloppy(value) is None:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_valid_cidr(value: str) -> list[str]:
    """netutils.ParseCIDRSloppy: host bits may be set, the prefix length is decimal."""
    addr, sep, bits = value.partition("/") if isinstance(value, str) else ("", "", "")
    ip = _parse_ip_raw(addr)
    if sep and ip is not None and bits.isascii() and bits.isdigit() and int(bits) <= ip.max_prefixlen:
        return []
    return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


def non_special_ip_errors(value: str) -> list[str]:
    """ValidateNonSpecialIP: no unspecified, loopback or link-local address (Endpoints,
    EndpointSlices and Service externalIPs)."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return ["must be a valid IP address"]
    b = ip.packed
    v4 = ip.version == 4
    errs = []
    if ip.is_unspecified:
        errs.append(f"may not be unspecified ({value})")
    if ip.is_loopback:
        errs.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if ip.is_link_local:
        errs.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    if (b[:3] == b"\xe0\x00\x00") if v4 else (b[0] == 0xFF and b[1] & 0x0F == 0x02):
        errs.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return errs
