"""Label and field selectors: parse, match and error texts of apimachinery labels/fields (1.32)."""

from __future__ import annotations

import pytest

from svcnet.api import selectors
from svcnet.api.errors import APIError

KEY_REGEX_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                 "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                 "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
VALUE_REGEX_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                   "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                   "'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def bad_request(fn, *args) -> str:
    with pytest.raises(APIError) as e:
        fn(*args)
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    return e.value.message


# --- label selector: parsing to the canonical String() -------------------------------------------

@pytest.mark.parametrize("text,canonical", [
    ("", ""),
    ("   ", ""),
    ("app=web", "app=web"),
    ("app==web", "app==web"),
    ("app!=web", "app!=web"),
    ("app", "app"),
    ("!app", "!app"),
    ("  app = web ,\ttier\n!= db ", "app=web,tier!=db"),
    ("tier=fe,app=web", "app=web,tier=fe"),                  # sorted by key
    ("b,!a", "!a,b"),
    ("env in (prod, dev,qa)", "env in (dev,prod,qa)"),       # values sorted
    ("env notin (prod)", "env notin (prod)"),
    ("env in (prod,prod)", "env in (prod)"),                 # values are a set
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("x in (,a)", "x in (,a)"),
    ("x in (a,)", "x in (,a)"),
    ("x in (in,notin)", "x in (in,notin)"),                  # keywords are values inside (...)
    ("in=notin", "in=notin"),
    ("a=", "a="),
    ("a=,b", "a=,b"),
    ("a>5", "a>5"),
    ("a<30", "a<30"),
    ("example.com/app=web", "example.com/app=web"),
    ("k=v1,k=v2", "k=v1,k=v2"),
])
def test_parse_label_selector(text, canonical):
    assert str(selectors.parse_label_selector(text)) == canonical


@pytest.mark.parametrize("text,message", [
    ("a in ", "unable to parse requirement: found '' expected: '('"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (b,", "unable to parse requirement: found '', expected: ',', or identifier"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in (a=b)", "unable to parse requirement: found '=', expected: ',' or ')'"),
    ("a in (b,,)", "unable to parse requirement: found ')', expected: ',', or identifier"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("a=b,,c", "found ',', expected: identifier after ','"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("-bad=x", f'unable to parse requirement: <nil>: Invalid value: "-bad": {KEY_REGEX_MSG}'),
    ("a/b/c", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name must consist '
              "of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
              "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
              "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
              "(e.g. 'example.com/MyName')"),
    ("Example.com/app", 'unable to parse requirement: <nil>: Invalid value: "Example.com/app": prefix part '
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                        "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                        "'example.com', regex used for validation is "
                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ("/app", 'unable to parse requirement: <nil>: Invalid value: "/app": prefix part must be non-empty'),
    ("x" * 64, f'unable to parse requirement: <nil>: Invalid value: "{"x" * 64}": name part must be no '
               "more than 63 characters"),
    ("app=-bad-", f'unable to parse requirement: values[0][app]: Invalid value: "-bad-": {VALUE_REGEX_MSG}'),
    ("app in (ok,-bad)", f'unable to parse requirement: values[0][app]: Invalid value: "-bad": {VALUE_REGEX_MSG}'),
    ("app=" + "v" * 64, f'unable to parse requirement: values[0][app]: Invalid value: "{"v" * 64}": must be '
                        "no more than 63 characters"),
    ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, "
            "the value must be an integer"),
    ("a<1.5", "unable to parse requirement: values[0]: Invalid value: \"1.5\": for 'Gt', 'Lt' operators, "
              "the value must be an integer"),
    ("a<-3", f'unable to parse requirement: values[0][a]: Invalid value: "-3": {VALUE_REGEX_MSG}'),
    ("a>-x", "unable to parse requirement: [values[0]: Invalid value: \"-x\": for 'Gt', 'Lt' operators, "
             f'the value must be an integer, values[0][a]: Invalid value: "-x": {VALUE_REGEX_MSG}]'),
])
def test_parse_label_selector_errors(text, message):
    assert bad_request(selectors.parse_label_selector, text) == message


# --- label selector: matching ---------------------------------------------------------------------

@pytest.mark.parametrize("text,labels,expected", [
    ("", {}, True),
    ("", None, True),
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "web", "x": "y"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app==web", {"app": "web"}, True),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("app", {"app": ""}, True),
    ("app", {"other": "x"}, False),
    ("!app", {}, True),
    ("!app", {"app": ""}, False),
    ("env in (prod,dev)", {"env": "dev"}, True),
    ("env in (prod,dev)", {"env": "qa"}, False),
    ("env in (prod,dev)", {}, False),
    ("env notin (prod,dev)", {"env": "qa"}, True),
    ("env notin (prod,dev)", {}, True),
    ("env notin (prod,dev)", {"env": "prod"}, False),
    ("x in (,a)", {"x": ""}, True),
    ("a=", {"a": ""}, True),
    ("a=", {}, False),
    ("a>5", {"a": "6"}, True),
    ("a>5", {"a": "5"}, False),
    ("a>5", {"a": "x"}, False),
    ("a>5", {}, False),
    ("a<5", {"a": "-10"}, True),
    ("a<5", {"a": "+4"}, True),
    ("a<5", {"a": " 4"}, False),
    ("a>5", {"a": str(1 << 63)}, False),                    # out of int64 range
    ("app=web,tier!=db", {"app": "web", "tier": "fe"}, True),
    ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
])
def test_label_selector_matches(text, labels, expected):
    assert selectors.parse_label_selector(text).matches(labels) is expected


def test_requirements_expose_key_operator_values():
    sel = selectors.parse_label_selector("b in (y,x),!a")
    assert [(r.key, r.operator, r.values) for r in sel.requirements] == [
        ("a", selectors.DOES_NOT_EXIST, ()), ("b", selectors.IN, ("x", "y"))]
    assert sel.empty is False and selectors.parse_label_selector("").empty is True


# --- metav1.LabelSelector and Service selectors ----------------------------------------------------

@pytest.mark.parametrize("obj,canonical,matching,not_matching", [
    (None, "", None, {}),                                    # nil selector matches nothing
    ({}, "", {}, None),                                      # empty selector matches everything
    ({"matchLabels": {}, "matchExpressions": []}, "", {"a": "b"}, None),
    ({"matchLabels": {"tier": "fe", "app": "web"}}, "app=web,tier=fe", {"app": "web", "tier": "fe"}, {"app": "web"}),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
     "env in (dev,prod)", {"env": "prod"}, {"env": "qa"}),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
     "env notin (prod)", {}, {"env": "prod"}),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, "gpu", {"gpu": ""}, {}),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, "!gpu", {}, {"gpu": "1"}),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]},
     "app=web,app", {"app": "web"}, {"app": "x"}),
])
def test_selector_from_label_selector_object(obj, canonical, matching, not_matching):
    sel = selectors.selector_from_label_selector_object(obj)
    assert str(sel) == canonical
    if matching is not None:
        assert sel.matches(matching) is True
    if not_matching is not None:
        assert sel.matches(not_matching) is False


@pytest.mark.parametrize("obj,message", [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]},
     '"Equals" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]},
     'values: Invalid value: []string{"x", "y"}: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"-a": "b"}}, f'key: Invalid value: "-a": {KEY_REGEX_MSG}'),
    ({"matchLabels": {"a": "b c"}}, f'values[0][a]: Invalid value: "b c": {VALUE_REGEX_MSG}'),
    ({"matchExpressions": [{"key": "-a", "operator": "In"}]},
     f'[key: Invalid value: "-a": {KEY_REGEX_MSG}, values: Invalid value: []string(nil): for \'in\', '
     "'notin' operators, values set can't be empty]"),
])
def test_selector_from_label_selector_object_errors(obj, message):
    assert bad_request(selectors.selector_from_label_selector_object, obj) == message


@pytest.mark.parametrize("d,canonical,labels,expected", [
    ({"app": "web", "tier": "fe"}, "app=web,tier=fe", {"tier": "fe", "app": "web", "x": "1"}, True),
    ({"app": "web"}, "app=web", {"app": "db"}, False),
    ({}, "", {"anything": "x"}, True),
    (None, "", {}, True),
])
def test_selector_from_map(d, canonical, labels, expected):
    sel = selectors.selector_from_map(d)
    assert str(sel) == canonical
    assert sel.matches(labels) is expected


# --- field selectors -----------------------------------------------------------------------------

POD = {"metadata": {"name": "web-1", "namespace": "prod"},
       "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "default"},
       "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}}
EVENT = {"metadata": {"name": "web.1", "namespace": "default"},
         "involvedObject": {"kind": "Service", "namespace": "default", "name": "web", "uid": "u-1",
                            "apiVersion": "v1", "resourceVersion": "42", "fieldPath": ""},
         "reason": "Created", "type": "Normal", "reportingComponent": "svcnet", "source": {}}
NODE = {"metadata": {"name": "node-1"}, "spec": {}}
SERVICE = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "ClusterIP", "clusterIP": "None"}}


@pytest.mark.parametrize("kind,text,obj,expected", [
    ("Pod", "", POD, True),
    ("Pod", "metadata.name=web-1", POD, True),
    ("Pod", "metadata.name==web-1", POD, True),
    ("Pod", "metadata.name!=web-1", POD, False),
    ("Pod", "metadata.namespace=prod,status.phase=Running", POD, True),
    ("Pod", "metadata.namespace=prod,status.phase!=Running", POD, False),
    ("Pod", "spec.nodeName=node-1", POD, True),
    ("Pod", "spec.host=node-1", POD, True),                  # legacy alias of spec.nodeName
    ("Pod", "spec.restartPolicy=Always,spec.schedulerName=default-scheduler", POD, True),
    ("Pod", "spec.serviceAccountName=default", POD, True),
    ("Pod", "spec.hostNetwork=false", POD, True),            # absent bool reads "false"
    ("Pod", "spec.hostNetwork=true", {**POD, "spec": {"hostNetwork": True}}, True),
    ("Pod", "status.podIP=10.244.0.5", POD, True),
    ("Pod", "status.podIP=10.244.9.9", {**POD, "status": {"podIPs": [{"ip": "10.244.9.9"}]}}, True),
    ("Pod", "status.nominatedNodeName=", POD, True),         # missing field reads ""
    ("Pod", "status.nominatedNodeName!=", POD, False),
    ("Pod", "metadata.name=", POD, False),
    ("Pod", ",metadata.name=web-1,", POD, True),             # empty terms are skipped
    ("Event", "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Service,"
              "involvedObject.uid=u-1", EVENT, True),
    ("Event", "involvedObject.apiVersion=v1,involvedObject.resourceVersion=42,involvedObject.fieldPath=",
     EVENT, True),
    ("Event", "reason=Created,type=Normal,reportingComponent=svcnet", EVENT, True),
    ("Event", "source=svcnet", EVENT, True),                 # falls back to reportingComponent
    ("Event", "source=kubelet", {**EVENT, "source": {"component": "kubelet"}}, True),
    ("Node", "metadata.name=node-1,spec.unschedulable=false", NODE, True),
    ("Node", "spec.unschedulable=true", {**NODE, "spec": {"unschedulable": True}}, True),
    ("Namespace", "status.phase=Active", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}}, True),
    ("Service", "spec.clusterIP!=None", SERVICE, False),
    ("Service", "spec.type=ClusterIP,metadata.namespace=default", SERVICE, True),
    ("Deployment", "metadata.name=web,metadata.namespace=default", SERVICE, True),
    ("ConfigMap", "metadata.name=a\\,b\\=c\\\\d", {"metadata": {"name": "a,b=c\\d"}}, True),
])
def test_field_selector_matches(kind, text, obj, expected):
    assert selectors.parse_field_selector(text, kind).matches(obj) is expected


@pytest.mark.parametrize("kind,text,message", [
    ("Pod", "spec.foo=x", "field label not supported: spec.foo"),
    ("Pod", "status.podIPs=x", "field label not supported: status.podIPs"),
    ("Pod", "z=1,spec.bar=x", "field label not supported: spec.bar"),  # checked in sorted order
    ("Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Namespace", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Service", "spec.ports=80", "field label not supported: spec.ports"),
    ("Event", "involvedObject.foo=x", "field label not supported: involvedObject.foo"),
    ("ReplicaSet", "status.replicas=1",
     '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("Deployment", "spec.replicas=1",
     '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("EndpointSlice", "addressType=IPv4",
     '"addressType" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("ConfigMap", "data=x", '"data" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("Pod", "metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("Pod", "a=1,b", "invalid selector: 'a=1,b'; can't understand 'b'"),
    ("Pod", "metadata.name=a,b", "invalid selector: 'metadata.name=a,b'; can't understand 'b'"),
    ("Pod", "metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("Pod", "metadata.name=a\\x", "invalid field selector: invalid escape sequence: \\x"),
    ("Pod", "metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
    ("Pod", "spec.foo=x,metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("Pod", "metadata.name=!=x", "invalid field selector: unescaped character in value: 61"),
])
def test_field_selector_errors(kind, text, message):
    assert bad_request(selectors.parse_field_selector, text, kind) == message


@pytest.mark.parametrize("text,terms", [
    ("metadata.name=web", [("metadata.name", "web", False)]),
    ("metadata.name==web", [("metadata.name", "web", False)]),
    ("metadata.name!=web", [("metadata.name", "web", True)]),
    ("status.phase=Running,metadata.name=a", [("metadata.name", "a", False), ("status.phase", "Running", False)]),
    ("metadata.name=a\\,b", [("metadata.name", "a,b", False)]),
    ("metadata.name=a\\=b", [("metadata.name", "a=b", False)]),
    ("metadata.name=a\\\\b", [("metadata.name", "a\\b", False)]),
    ("metadata.name!=\\=x\\=", [("metadata.name", "=x=", True)]),  # split at the first operator
])
def test_field_selector_terms(text, terms):
    sel = selectors.parse_field_selector(text, "Pod")
    assert [(t.field, t.value, t.negated) for t in sel.terms] == terms


def test_field_selector_requires_exact_match():
    sel = selectors.parse_field_selector("metadata.name=web,metadata.namespace!=x", "Pod")
    assert sel.requires_exact_match("metadata.name") == "web"
    assert sel.requires_exact_match("metadata.namespace") is None
    assert sel.requires_exact_match("spec.nodeName") is None
    assert selectors.parse_field_selector("", "Pod").empty is True


def test_selectable_fields():
    assert selectors.selectable_fields("Service", SERVICE) == {
        "metadata.name": "web", "metadata.namespace": "default", "spec.clusterIP": "None", "spec.type": "ClusterIP"}
    assert selectors.selectable_fields("Lease", {"metadata": {"name": "l"}}) == {
        "metadata.name": "l", "metadata.namespace": ""}
