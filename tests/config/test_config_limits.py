"""Values `check` passed and `run` could not use: listen hosts that never bind, two listeners
on one address, headers that cannot carry a key, intervals that hammer a provider, a pair of
durations blamed on the key not written, status words that match nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config import Config, ConfigError, load_config

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"
CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\npassword = 'pw-0123'\n"
SECRET = "0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own environment out of secret resolution."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def listeners(receiver: str, api: str | None = None) -> str:
    text = f"[receiver]\nlisten = '{receiver}'\npublic_url = 'https://i.example'\n"
    text += f"secret = '{SECRET}'\n"
    if api is not None:
        text += f"[api]\nlisten = '{api}'\ntoken = '{SECRET}'\n"
    return CCV + text


# --- listen addresses


@pytest.mark.parametrize(
    ("listen", "host"),
    [
        # `run` said "Name or service not known" and exited 75: systemd restarted it forever.
        ("999.1.1.1:18860", "999.1.1.1"),
        ("host name:18860", "host name"),
        ("127.1:18860", "127.1"),
        ("-bad-.example:18860", "-bad-.example"),
        ("a..b:18860", "a..b"),
        (f"{'a' * 64}.example:18860", f"{'a' * 64}.example"),
    ],
)
def test_a_listen_host_that_is_no_address_nor_name_is_refused(
    tmp_path: Path, listen: str, host: str
) -> None:
    error = load_error(tmp_path, listeners(listen))
    assert (error.key, error.problem) == (
        "receiver.listen",
        f"'{host}' is neither an IP address nor a host name",
    )
    error = load_error(tmp_path, listeners("127.0.0.1:18861", listen))
    assert (error.key, error.problem) == (
        "api.listen",
        f"'{host}' is neither an IP address nor a host name",
    )


@pytest.mark.parametrize(
    ("listen", "host"),
    [
        ("localhost:18860", "localhost"),
        ("localhost.:18860", "localhost."),
        ("reconciler-1.internal.example:18860", "reconciler-1.internal.example"),
        # glibc resolves a name with `_` in a label: it was refused.
        ("my_host:18860", "my_host"),
        ("under_score.example:18860", "under_score.example"),
        ("10.0.0.7:18860", "10.0.0.7"),
        ("0.0.0.0:18860", "0.0.0.0"),
        ("[::]:18860", "::"),
        ("[fe80::1%eth0]:18860", "fe80::1%eth0"),
    ],
)
def test_ip_addresses_and_host_names_are_listen_hosts(
    tmp_path: Path, listen: str, host: str
) -> None:
    receiver = load(tmp_path, listeners(listen)).receiver
    assert receiver is not None
    assert (receiver.listen_host, receiver.listen_port) == (host, 18860)


@pytest.mark.parametrize(
    ("receiver", "api", "problem"),
    [
        # A name is not resolved at load time: it may be the other's address.
        (
            "localhost:18862",
            "127.0.0.1:18862",
            "127.0.0.1:18862 is [receiver] listen's port too, "
            "and its host 'localhost' may be the same address",
        ),
        (
            "127.0.0.1:18862",
            "localhost:18862",
            "localhost:18862 is [receiver] listen's port too, "
            "and its host '127.0.0.1' may be the same address",
        ),
        (
            "[::1]:18862",
            "[0:0:0:0:0:0:0:1]:18862",
            "[0:0:0:0:0:0:0:1]:18862 is [receiver] listen's port too, "
            "and its host '::1' may be the same address",
        ),
        (
            "127.0.0.1:18862",
            "[::]:18862",
            "[::]:18862 is [receiver] listen's port too, "
            "and its host '127.0.0.1' may be the same address",
        ),
        (
            "ccv.example:18862",
            "ccv.example:18862",
            "ccv.example:18862 is [receiver] listen's port too",
        ),
    ],
)
def test_two_listeners_that_may_share_an_address_and_port_are_refused(
    tmp_path: Path, receiver: str, api: str, problem: str
) -> None:
    error = load_error(tmp_path, listeners(receiver, api))
    assert (error.key, error.problem) == ("api.listen", problem)


@pytest.mark.parametrize(
    ("receiver", "api"),
    [
        ("127.0.0.1:18863", "127.0.0.2:18863"),
        ("[::1]:18863", "127.0.0.1:18863"),
        ("localhost:18863", "localhost:18864"),
    ],
)
def test_listeners_on_different_addresses_or_ports_are_accepted(
    tmp_path: Path, receiver: str, api: str
) -> None:
    config = load(tmp_path, listeners(receiver, api))
    assert config.receiver is not None and config.api is not None


# --- CCV's auth_header


@pytest.mark.parametrize(
    "header",
    [
        *("Content-Length", "host", "Transfer-Encoding", "Connection", "Keep-Alive", "TE"),
        *("Upgrade", "Trailer", "Proxy-Authorization", "Expect", "Content-Type", "Accept"),
        "User-Agent",
    ],
)
def test_a_header_http_or_reconciler_uses_cannot_carry_the_key(tmp_path: Path, header: str) -> None:
    error = load_error(tmp_path, CCV + f"auth = 'header'\nauth_header = '{header}'\n")
    assert (error.key, error.problem) == (
        "ccv.auth_header",
        f"'{header}' cannot carry the key: HTTP or reconciler itself uses it",
    )


def test_a_header_of_its_own_carries_the_key(tmp_path: Path) -> None:
    (ccv,) = load(tmp_path, CCV + "auth = 'header'\nauth_header = 'X-Api-Key'\n").ccv
    assert ccv.auth_header == "X-Api-Key"


# --- intervals between requests to a provider


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # "1ms" made thousands of requests a second.
        (CCV + "poll_interval = '1ms'\n", "ccv.poll_interval"),
        (CCNOW + "poll_interval = 0.05\n", "ccnow.poll_interval"),
        (CCV + "min_interval = '99ms'\n", "ccv.min_interval"),
        (CCNOW + "min_interval = '10ms'\nmax_interval = '20ms'\n", "ccnow.min_interval"),
        (CCV + "status_intervals = { AwaitingPayment = '50ms' }\n",
         "ccv.status_intervals.AwaitingPayment"),
        (CCNOW + "not_found_interval = '1ms'\n", "ccnow.not_found_interval"),
        (CCNOW + "settled_interval = '1ms'\n", "ccnow.settled_interval"),
        (CCV + "active_max_interval = '1ms'\n", "ccv.active_max_interval"),
    ],
)  # fmt: skip
def test_an_interval_between_requests_below_100ms_is_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (key, 'must be at least "100ms"')


def test_intervals_of_100ms_and_more_are_accepted(tmp_path: Path) -> None:
    # Below a second was refused, though the example config shows 0.5 and "500ms" as durations
    # and configs that loaded before held them.
    schedule = "min_interval = 0.5\nmax_interval = 1\nnot_found_interval = '100ms'\n"
    (ccv,) = load(tmp_path, CCV + "poll_interval = '500ms'\n" + schedule).ccv
    assert (ccv.poll_interval_s, ccv.schedule.min_interval_s, ccv.schedule.max_interval_s) == (
        0.5,
        0.5,
        1.0,
    )
    assert ccv.schedule.not_found_interval_s == 0.1


# --- a pair of durations


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        # It named sinks[0].retry_max, a key the file does not hold.
        (
            CCV + "[[sinks]]\ntype = 'log'\nretry_min = '2h'\n",
            "sinks[0].retry_min",
            'must not be more than retry_max (default "1h")',
        ),
        (
            CCNOW + "min_interval = '7h'\n",
            "ccnow.min_interval",
            'must not be more than max_interval (default "6h")',
        ),
        (
            CCV + "max_interval = '30s'\n",
            "ccv.max_interval",
            'must not be less than min_interval (default "1m")',
        ),
        (
            CCV + "[[sinks]]\ntype = 'log'\nretry_max = '1s'\n",
            "sinks[0].retry_max",
            'must not be less than retry_min (default "5s")',
        ),
        (
            CCV + "min_interval = '2h'\nmax_interval = '1h'\n",
            "ccv.max_interval",
            "must not be less than min_interval",
        ),
    ],
)
def test_a_pair_out_of_order_names_a_key_the_file_holds(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (key, problem)


# --- status words as keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (CCNOW + '[alerts.stuck_after.ccnow]\n"" = "1d"\n', "alerts.stuck_after.ccnow."),
        (CCV + '[alerts.stuck_after.ccv]\n" Screening" = "1d"\n',
         "alerts.stuck_after.ccv. Screening"),
        (CCV + 'status_intervals = { "" = "5m" }\n', "ccv.status_intervals."),
        (CCNOW + '[alerts.stuck_after.ccnow]\n"on\\thold" = "1d"\n',
         "alerts.stuck_after.ccnow.on\\x09hold"),
    ],
)  # fmt: skip
def test_a_status_word_that_can_match_no_order_is_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (
        key,
        "not a status word (empty, blanks around it, or a control character)",
    )


def test_a_status_word_of_several_words_is_kept(tmp_path: Path) -> None:
    config = load(tmp_path, CCNOW + '[alerts.stuck_after.ccnow]\n"on hold" = "1d"\n')
    assert config.alerts.stuck_after_s[("ccnow", "on hold")] == 86400.0
