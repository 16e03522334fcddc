"""`reconciler sandbox --listen`: read by the config's `listen` parser (one host:port reader),
with port 0 allowed (the system picks a free one: bench/ and the tests use it) and no host
meaning 127.0.0.1."""

from __future__ import annotations

import pytest

from reconciler.commands.sandbox import split_listen
from reconciler.exits import EX_USAGE
from tests.conftest import assert_one_line, call_cli


@pytest.mark.parametrize(
    ("text", "listen"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:8900", ("127.0.0.1", 8900)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("my_host:8900", ("my_host", 8900)),
        (":8900", ("127.0.0.1", 8900)),
    ],
)
def test_a_listen_address_is_split(text: str, listen: tuple[str, int]) -> None:
    assert split_listen(text) == listen


SHAPE = "--listen wants HOST:PORT like 127.0.0.1:8900 or [::1]:8900 (port 0 to 65535), got"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("127.0.0.1", (SHAPE, "'127.0.0.1'")),
        ("127.0.0.1:65536", (SHAPE, "'127.0.0.1:65536'")),
        ("127.0.0.1:-1", (SHAPE, "'127.0.0.1:-1'")),
        ("127.0.0.1:", (SHAPE,)),
        # A bare IPv6 address is no host:port ("::1:8900" is an address too): the brackets say.
        ("::1:8900", (SHAPE, "'::1:8900'")),
        ("[not v6]:8900", (SHAPE,)),
        ("a b:8900", ("--listen: 'a b' is neither an IP address nor a host name",)),
        ("999.1.1.1:8900", ("--listen: '999.1.1.1' is neither an IP address nor a host name",)),
        (
            "[::ffff:127.0.0.1]:8900",
            ("--listen: '::ffff:127.0.0.1' is an IPv4-mapped IPv6 address", "127.0.0.1"),
        ),
    ],
)
async def test_a_listen_address_that_cannot_be_one_is_a_usage_error(
    text: str, words: tuple[str, ...]
) -> None:
    result = await call_cli("sandbox", "--listen", text)
    assert_one_line(result, EX_USAGE, "reconciler sandbox: error: ", *words)
