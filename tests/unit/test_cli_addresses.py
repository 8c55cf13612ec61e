"""`svcnet dns` address flags: ADDR[:PORT] with the right default port, bad ports refused by
argparse (exit status 2 and a message), never a traceback."""

import pytest

from svcnet.cli.main import _parser


def test_ports_default_per_flag():
    a = _parser().parse_args(["dns", "--listen", "10.244.0.1", "--listen", "127.0.0.1:5353",
                              "--metrics-listen", "10.244.0.1"])
    assert a.listen == [("10.244.0.1", 53), ("127.0.0.1", 5353)]
    assert a.metrics_listen == ("10.244.0.1", 9153)
    assert _parser().parse_args(["dns", "--metrics-listen", "[::1]:9999"]).metrics_listen == ("::1", 9999)


@pytest.mark.parametrize("flag,value", [("--listen", "127.0.0.1:99999"), ("--listen", "127.0.0.1:0"),
                                        ("--metrics-listen", "127.0.0.1:abc")])
def test_bad_ports_are_usage_errors(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["dns", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}: invalid port in '{value}'" in capsys.readouterr().err


def test_ipv6_addresses_with_and_without_a_port():
    """A bare IPv6 address is an address (its last group is no port), in brackets it may carry
    one; an empty address is a usage error, not a bind to ':53'."""
    parse = _parser().parse_args
    assert parse(["dns", "--metrics-listen", "::1"]).metrics_listen == ("::1", 9153)
    assert parse(["dns", "--metrics-listen", "fd00::10"]).metrics_listen == ("fd00::10", 9153)
    assert parse(["dns", "--listen", "[fd00::a]"]).listen == [("fd00::a", 53)]
    assert parse(["dns", "--listen", "[fd00::a]:5353"]).listen == [("fd00::a", 5353)]


def test_an_empty_address_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["dns", "--listen", ":53"])
    assert e.value.code == 2 and "argument --listen: no address in ':53'" in capsys.readouterr().err
