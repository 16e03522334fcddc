"""Configuration loading: every problem names file and key; secrets resolve in order, never leak."""

from __future__ import annotations

import base64
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.config import (
    ApiConfig,
    CommandSinkConfig,
    Config,
    ConfigError,
    JsonlSinkConfig,
    LogSinkConfig,
    RetryConfig,
    Secret,
    WebhookSinkConfig,
    load_config,
    parse_duration,
)
from reconciler.config.loader import Loader
from reconciler.config.secret import webhook_key
from reconciler.config.table import Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

EXAMPLE = Path(__file__).parents[2] / "config" / "reconciler.example.toml"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CCV = """
[ccv]
base_url = "https://ccv.example/api/"
api_key = "t_0123"
"""
CCNOW = """
[ccnow]
url = "https://ccnow.example/oapi"
client_id = "amylove"
password = "pw-0123"
"""
RECEIVER = """
[receiver]
public_url = "https://integrator.example/reconciler/"
secret = "0123456789abcdef"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own environment out of secret resolution."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "reconciler.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config error: {path}: {info.value.key}: {info.value.problem}"
    return info.value


# --- defaults ---------------------------------------------------------------------------------


def test_minimal_ccv_account_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, CCV)
    (ccv,) = config.ccv
    assert ccv.name == "default"
    assert ccv.base_url == "https://ccv.example/api"
    assert ccv.api_key.reveal() == "t_0123"
    assert (ccv.poll_interval_s, ccv.concurrency, ccv.timeout_s) == (300.0, 8, 10.0)
    assert ccv.retry == RetryConfig(attempts=3, backoff_s=0.5)
    assert (ccv.auth, ccv.auth_header) == ("basic", "Authorization")
    assert (ccv.schedule.min_interval_s, ccv.schedule.max_interval_s) == (60.0, 6 * 3600.0)
    assert ccv.schedule.status_intervals_s == {"AwaitingPayment": 120.0, "Incomplete": 21600.0}
    assert ccv.schedule.not_found_interval_s == 86400.0
    assert config.ccnow == ()
    assert config.receiver is None
    assert config.sinks == ()
    assert config.alerts.stuck_after_s[("ccv", "AwaitingPayment")] == 2 * 86400.0
    assert config.alerts.stuck_after_s[("ccnow", "mark_canceled")] == 3 * 86400.0


def test_minimal_ccnow_account_gets_the_documented_defaults(tmp_path: Path) -> None:
    (ccnow,) = load(tmp_path, CCNOW).ccnow
    assert (ccnow.name, ccnow.url, ccnow.client_id) == (
        "default",
        "https://ccnow.example/oapi",
        "amylove",
    )
    assert ccnow.password.reveal() == "pw-0123"
    assert ccnow.store_id == ""
    assert (ccnow.poll_interval_s, ccnow.batch_size, ccnow.concurrency) == (120.0, 25, 2)
    assert ccnow.timeout_s == 15.0
    assert ccnow.schedule.min_interval_s == 120.0
    assert ccnow.schedule.status_intervals_s == {}
    assert ccnow.schedule.watch_settled_s == 180 * 86400.0
    assert ccnow.schedule.settled_interval_s == 86400.0
    assert ccnow.notification_token is None


def test_every_key_can_be_set(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [[ccv]]
        name = "shop-nl"
        base_url = "http://127.0.0.1:9000"
        api_key = "k"
        poll_interval = 30
        concurrency = 256
        timeout = 2.5
        retries = 0
        retry_backoff = "100ms"
        auth = "header"
        auth_header = "X-Api-Key"
        min_interval = "10s"
        max_interval = "1h"
        status_intervals = { Screening = "1m" }
        not_found_interval = "2d"

        [[ccnow]]
        name = "us"
        url = "https://ccnow.example"
        client_id = "c"
        password = "p"
        store_id = "s1"
        poll_interval = "1m"
        batch_size = 100
        concurrency = 16
        timeout = "3s"
        retries = 10
        retry_backoff = "2s"
        min_interval = "3m"
        max_interval = "3h"
        status_intervals = { paypal_hold = "30m" }
        watch_settled = 0
        settled_interval = "12h"
        not_found_interval = "3d"
        notification_token = "abcdefghij_-0123"

        [receiver]
        listen = "[::1]:8443"
        public_url = "https://integrator.example/r/"
        secret = "0123456789abcdef"
        debounce = "500ms"
        remember_ref = "1d"
        max_body = 2048
        max_connections = 200
        header_timeout = "5s"

        [[sinks]]
        type = "command"
        name = "hook"
        command = ["/usr/bin/env", "true"]
        timeout = "1s"
        retry_min = "1s"
        retry_max = "2m"
        max_age = "1h"
        """,
    )
    (ccv,) = config.ccv
    assert (ccv.name, ccv.base_url, ccv.poll_interval_s, ccv.concurrency) == (
        "shop-nl",
        "http://127.0.0.1:9000",
        30.0,
        256,
    )
    assert (ccv.timeout_s, ccv.retry.attempts, ccv.retry.backoff_s) == (2.5, 0, 0.1)
    assert (ccv.auth, ccv.auth_header) == ("header", "X-Api-Key")
    assert ccv.schedule.status_intervals_s == {"Screening": 60.0}  # replaces the default
    assert ccv.schedule.not_found_interval_s == 2 * 86400.0
    (ccnow,) = config.ccnow
    assert (ccnow.store_id, ccnow.batch_size, ccnow.concurrency) == ("s1", 100, 16)
    assert ccnow.schedule.watch_settled_s == 0.0
    assert ccnow.schedule.status_intervals_s == {"paypal_hold": 1800.0}
    assert ccnow.notification_token == Secret("abcdefghij_-0123")
    receiver = config.receiver
    assert receiver is not None
    assert (receiver.listen_host, receiver.listen_port) == ("::1", 8443)
    assert receiver.public_url == "https://integrator.example/r"
    assert (receiver.debounce_s, receiver.remember_ref_s, receiver.max_body_bytes) == (
        0.5,
        86400.0,
        2048,
    )
    assert (receiver.max_connections, receiver.header_timeout_s) == (200, 5.0)
    default = load(tmp_path, CCV + RECEIVER).receiver
    assert default is not None
    assert (default.max_connections, default.header_timeout_s) == (None, 10.0)
    (sink,) = config.sinks
    assert isinstance(sink, CommandSinkConfig)
    assert (sink.type, sink.name, sink.command) == ("command", "hook", ("/usr/bin/env", "true"))
    assert (sink.timeout_s, sink.retry_min_s, sink.retry_max_s, sink.max_age_s) == (
        1.0,
        1.0,
        120.0,
        3600.0,
    )


# --- bad configs ------------------------------------------------------------------------------


def ccv_accounts(*names: str | None, key: bool = True) -> str:
    """[[ccv]] tables with these names (None: no name key)."""
    tables = []
    for name in names:
        table = "[[ccv]]\nbase_url = 'https://ccv.example'\n"
        table += "" if name is None else f"name = '{name}'\n"
        tables.append(table + ("api_key = 'k'\n" if key else ""))
    return "".join(tables)


# fmt: off
BAD_CONFIGS: list[tuple[str, str, str, str]] = [
    # (id, toml, key, problem fragment)
    ("no-account", "[store]\n", "ccv", "no [ccv] or [ccnow] account configured"),
    ("unknown-section", CCV + "[stor]\npath = 'x'\n", "stor", "unknown key"),
    ("typo", CCV + "poll_intervall = '5m'\n", "ccv.poll_intervall", "unknown key"),
    ("ccv-not-table", "ccv = 5\n", "ccv", "expected a table or array of tables, got integer"),
    ("ccv-array-item", "ccv = [1]\n", "ccv[0]", "expected a table, got integer"),
    ("base-url-missing", "[ccv]\napi_key = 'k'\n", "ccv.base_url", "required"),
    ("base-url-type", "[ccv]\nbase_url = 1\n", "ccv.base_url", "expected a string, got integer"),
    ("base-url-scheme", "[ccv]\nbase_url = 'ftp://x.example'\n", "ccv.base_url", "http(s) URL"),
    ("base-url-http", "[ccv]\nbase_url = 'http://x.example'\n", "ccv.base_url", "https required"),
    ("concurrency-str", CCV + "concurrency = '8'\n", "ccv.concurrency",
     "expected an integer, got string"),
    ("concurrency-bool", CCV + "concurrency = true\n", "ccv.concurrency",
     "expected an integer, got boolean"),
    ("concurrency-0", CCV + "concurrency = 0\n", "ccv.concurrency", "must be between 1 and 256"),
    ("retries-11", CCV + "retries = 11\n", "ccv.retries", "must be between 0 and 10"),
    ("duration-5x", CCV + "poll_interval = '5x'\n", "ccv.poll_interval",
     "invalid duration '5x' (use seconds or a number with ms, s, m, h, d)"),
    ("duration-negative", CCV + "timeout = -1\n", "ccv.timeout", "invalid duration '-1'"),
    # Past year 9999 for the scheduler: `check` passed it and `run` stopped with a traceback.
    ("duration-huge", CCV + "poll_interval = '3000000d'\n", "ccv.poll_interval",
     "invalid duration '3000000d' (at most 36500d, a century)"),
    ("duration-huge-number", CCV + "timeout = 1e300\n", "ccv.timeout", "at most 36500d"),
    ("duration-bool", CCV + "timeout = true\n", "ccv.timeout", "expected a duration"),
    ("duration-zero", CCV + "poll_interval = 0\n", "ccv.poll_interval", "must be greater than 0"),
    ("max-below-min", CCV + "min_interval = '2h'\nmax_interval = '1h'\n", "ccv.max_interval",
     "must not be less than min_interval"),
    ("status-interval", CCV + "status_intervals = { AwaitingPayment = 'soon' }\n",
     "ccv.status_intervals.AwaitingPayment", "invalid duration 'soon'"),
    ("auth", CCV + "auth = 'digest'\n", "ccv.auth", "must be one of basic, bearer, header"),
    ("auth-header", CCV + "auth_header = 'X Key'\n", "ccv.auth_header", "not a valid HTTP header"),
    ("key-and-file", CCV + "api_key_file = 'k.txt'\n", "ccv.api_key", "not both"),
    ("key-missing", "[ccv]\nbase_url = 'https://x.example'\n", "ccv.api_key",
     "required (or api_key_file, env RECONCILER_CCV_DEFAULT_API_KEY or RECONCILER_CCV_API_KEY, "
     "credential ccv-default-api-key or ccv-api-key)"),
    ("key-empty", "[ccv]\nbase_url = 'https://x.example'\napi_key = ''\n", "ccv.api_key",
     "must not be empty"),
    ("key-file-missing", "[ccv]\nbase_url = 'https://x.example'\napi_key_file = 'nope'\n",
     "ccv.api_key_file", "/nope: No such file or directory"),
    ("name-missing", ccv_accounts("a", None), "ccv[1].name",
     "required when there are several [[ccv]] tables"),
    ("name-duplicate", ccv_accounts("a", "a"), "ccv[1].name", "duplicate name 'a'"),
    ("name-env-clash", ccv_accounts("shop-nl", "shop_nl"), "ccv[1].name",
     "'shop_nl' and 'shop-nl' share env variable names"),
    ("name-upper", CCV + "name = 'Shop'\n", "ccv.name",
     "must be 1 to 32 characters of a-z 0-9 _ -"),
    ("name-long", CCV + f"name = '{'a' * 33}'\n", "ccv.name", "must be 1 to 32 characters"),
    ("ccnow-client-id", "[ccnow]\nurl = 'https://c.example'\npassword = 'p'\n", "ccnow.client_id",
     "required"),
    ("ccnow-password", "[ccnow]\nurl = 'https://c.example'\nclient_id = 'c'\n", "ccnow.password",
     "required (or password_file, env RECONCILER_CCNOW_DEFAULT_PASSWORD or "
     "RECONCILER_CCNOW_PASSWORD, credential ccnow-default-password or ccnow-password)"),
    ("ccnow-batch", CCNOW + "batch_size = 101\n", "ccnow.batch_size", "must be between 1 and 100"),
    ("ccnow-concurrency", CCNOW + "concurrency = 17\n", "ccnow.concurrency", "between 1 and 16"),
    ("ccnow-ccv-key", CCNOW + "auth = 'basic'\n", "ccnow.auth", "unknown key"),
    ("ccnow-token", CCNOW + "notification_token = 'short'\n", "ccnow.notification_token",
     "must be at least 16 characters of A-Z a-z 0-9 _ -"),
    ("ccnow-token-chars", CCNOW + "notification_token = 'abcdefghijklmnop/'\n",
     "ccnow.notification_token", "at least 16 characters of"),
    ("second-account-key", ccv_accounts("a") + ccv_accounts("b", key=False), "ccv[1].api_key",
     "required (or api_key_file, env RECONCILER_CCV_B_API_KEY, credential ccv-b-api-key)"),
    # `check` passed it; `run` then failed to bind the receiver (exit 75, restarted forever).
    ("api-receiver-port", CCV + "[receiver]\npublic_url = 'https://i.example'\n"
     "secret = '0123456789abcdef'\nlisten = '0.0.0.0:18280'\n[api]\nlisten = '127.0.0.1:18280'\n"
     "token = '0123456789abcdef'\n", "api.listen",
     "127.0.0.1:18280 is [receiver] listen's port too"),
    ("receiver-url", CCV + "[receiver]\nsecret = '0123456789abcdef'\n", "receiver.public_url",
     "required"),
    ("receiver-secret", CCV + "[receiver]\npublic_url = 'https://i.example'\n", "receiver.secret",
     "required (or secret_file, env RECONCILER_RECEIVER_SECRET, credential receiver-secret)"),
    ("receiver-short", CCV + RECEIVER.replace("0123456789abcdef", "short"), "receiver.secret",
     "must be at least 16 characters"),
    ("listen-no-port", CCV + RECEIVER + "listen = 'localhost'\n", "receiver.listen", "host:port"),
    ("listen-bare-v6", CCV + RECEIVER + "listen = '::1:8080'\n", "receiver.listen", "host:port"),
    ("listen-port-0", CCV + RECEIVER + "listen = '[::1]:0'\n", "receiver.listen", "host:port"),
    ("listen-port-big", CCV + RECEIVER + "listen = '127.0.0.1:65536'\n", "receiver.listen",
     "host:port"),
    ("max-body", CCV + RECEIVER + "max_body = 10\n", "receiver.max_body", "must be between"),
    ("max-connections", CCV + RECEIVER + "max_connections = 0\n", "receiver.max_connections",
     "must be between"),
    ("header-timeout", CCV + RECEIVER + "header_timeout = 0\n", "receiver.header_timeout",
     "must be greater than 0"),
    # A notification URL is public_url + a path: after a query or fragment, the path is lost.
    ("public-url-query", CCV + RECEIVER.replace("reconciler/", "r?x=1"), "receiver.public_url",
     "must not contain a query or fragment"),
    ("public-url-fragment", CCV + RECEIVER.replace("reconciler/", "r#f"), "receiver.public_url",
     "must not contain a query or fragment"),
    ("base-url-query", CCV.replace("api/", "api?v=1"), "ccv.base_url",
     "must not contain a query or fragment"),
    # A debounce of days would hold a real change's check back for days.
    ("debounce-huge", CCV + RECEIVER + "debounce = '1d'\n", "receiver.debounce",
     'must be at most "1h"'),
    ("header-timeout-huge", CCV + RECEIVER + "header_timeout = '1d'\n", "receiver.header_timeout",
     'must be at most "10m"'),
    ("sinks-table", CCV + "[sinks]\ntype = 'log'\n", "sinks", "expected an array of tables"),
    ("sink-type-missing", CCV + "[[sinks]]\nname = 'x'\n", "sinks[0].type", "required"),
    ("sink-type-bad", CCV + "[[sinks]]\ntype = 'email'\n", "sinks[0].type",
     "must be one of log, jsonl, webhook, command"),
    ("sink-foreign-key", CCV + "[[sinks]]\ntype = 'jsonl'\npath = 'e'\nurl = 'https://x.example'\n",
     "sinks[0].url", "not a key of a jsonl sink"),
    ("sink-unknown-key", CCV + "[[sinks]]\ntype = 'log'\ncolour = 'red'\n", "sinks[0].colour",
     "unknown key"),
    ("jsonl-path", CCV + "[[sinks]]\ntype = 'log'\n[[sinks]]\ntype = 'jsonl'\n", "sinks[1].path",
     "required"),
    ("webhook-url", CCV + f"[[sinks]]\ntype = 'webhook'\nsecret = '{WEBHOOK_SECRET}'\n",
     "sinks[0].url", "required"),
    ("webhook-http", CCV + f"[[sinks]]\ntype = 'webhook'\nurl = 'http://h.example'\n"
     f"secret = '{WEBHOOK_SECRET}'\n", "sinks[0].url", "https required"),
    ("webhook-secret-missing", CCV + "[[sinks]]\ntype = 'webhook'\nname = 'hq'\n"
     "url = 'https://h.example'\n", "sinks[0].secret",
     "required (or secret_file, env RECONCILER_SINK_HQ_SECRET, credential sink-hq-secret)"),
    ("webhook-secret-prefix", CCV + "[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n"
     "secret = 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n", "sinks[0].secret",
     "must be 'whsec_' followed by base64"),
    ("webhook-secret-base64", CCV + "[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n"
     "secret = 'whsec_not base64!'\n", "sinks[0].secret", "must be 'whsec_' followed by base64"),
    ("command-string", CCV + "[[sinks]]\ntype = 'command'\ncommand = 'notify --all'\n",
     "sinks[0].command", "expected a list of strings (argv)"),
    ("command-empty", CCV + "[[sinks]]\ntype = 'command'\ncommand = []\n", "sinks[0].command",
     "must not be empty"),
    ("command-item", CCV + "[[sinks]]\ntype = 'command'\ncommand = ['true', 1]\n",
     "sinks[0].command[1]", "expected a string, got integer"),
    ("command-nul", CCV + "[[sinks]]\ntype = 'command'\ncommand = ['true', \"a\\u0000b\"]\n",
     "sinks[0].command[1]", "must not contain a NUL character"),

    ("sink-name-duplicate", CCV + "[[sinks]]\ntype = 'log'\nname = 'x'\n"
     "[[sinks]]\ntype = 'log'\nname = 'x'\n", "sinks[1].name", "duplicate name 'x'"),
    # The log got every event once per log sink: twice, and an alert on it fired twice.
    ("sink-second-log", CCV + "[[sinks]]\ntype = 'log'\n[[sinks]]\ntype = 'jsonl'\npath = 'e'\n"
     "[[sinks]]\ntype = 'log'\nname = 'journal-2'\n", "sinks[2].type",
     "a second log sink (sinks[0] is one): the log gets every event once; remove one"),
    ("sink-name-builtin-log", CCV + "[[sinks]]\ntype = 'jsonl'\nname = 'log'\npath = 'e.jsonl'\n",
     "sinks[0].name", "'log' is the name of the built-in log sink"),
    ("sink-retry", CCV + "[[sinks]]\ntype = 'log'\nretry_min = '2h'\nretry_max = '1h'\n",
     "sinks[0].retry_max", "must not be less than retry_min"),
    # The first retry came an hour after the failure: max_age = "5s" dead-lettered at 1 h.
    ("sink-retry-past-max-age", CCV + "[[sinks]]\ntype = 'log'\nretry_min = '1h'\n"
     "retry_max = '1h'\nmax_age = '5s'\n", "sinks[0].retry_min", "must not be more than max_age"),
    ("alerts-unknown", CCV + "[alerts]\nstuck_afte = {}\n", "alerts.stuck_afte", "unknown key"),
    ("alerts-source", CCV + "[alerts.stuck_after.paypal]\npending = '1d'\n",
     "alerts.stuck_after.paypal", "unknown source (use ccv or ccnow)"),
    ("alerts-duration", CCV + "[alerts.stuck_after.ccv]\nAwaitingPayment = '2x'\n",
     "alerts.stuck_after.ccv.AwaitingPayment", "invalid duration '2x'"),
    ("alerts-type", CCV + "[alerts]\nstuck_after = 5\n", "alerts.stuck_after",
     "expected a table, got integer"),
    ("store-type", CCV + "[store]\npath = 5\n", "store.path", "expected a string, got integer"),
    # Status words as keys: a documented word in another case or misspelt matched no order, in
    # silence, and `check` said "config ok".
    ("stuck-misspelt", CCNOW + "[alerts.stuck_after.ccnow]\npendng = '1d'\n",
     "alerts.stuck_after.ccnow.pendng",
     "did you mean 'pending'? (a word ccnow documents, spelt otherwise)"),
    ("stuck-two-slips", CCV + "[alerts.stuck_after.ccv]\nAwaitngPaymnt = '1d'\n",
     "alerts.stuck_after.ccv.AwaitngPaymnt", "did you mean 'AwaitingPayment'?"),
    ("stuck-case", CCV + "[alerts.stuck_after.ccv]\nprocessing = '1d'\n",
     "alerts.stuck_after.ccv.processing", "did you mean 'Processing'?"),
    ("stuck-end-state", CCV + "[alerts.stuck_after.ccv]\nCompleted = '1d'\n",
     "alerts.stuck_after.ccv.Completed", "an order in an end state is never stuck"),
    ("stuck-case-end-state", CCV + "[alerts.stuck_after.ccv]\ncompleted = '1d'\n",
     "alerts.stuck_after.ccv.completed", "did you mean 'Completed'? status words are "
     "case-sensitive; 'Completed' is an end state: an order in an end state is never stuck"),
    ("stuck-end-state-ccnow", CCNOW + "[alerts.stuck_after.ccnow]\nchargeback = 0\n",
     "alerts.stuck_after.ccnow.chargeback", "an order in an end state is never stuck"),
    ("stuck-case-settled", CCNOW + "[alerts.stuck_after.ccnow]\nRefunded = '1d'\n",
     "alerts.stuck_after.ccnow.Refunded", "did you mean 'refunded'? status words are "
     "case-sensitive"),
    # It also dropped the default AwaitingPayment = "2m", as a given table replaces the default.
    ("interval-case", CCV + "status_intervals = { awaitingpayment = '1m' }\n",
     "ccv.status_intervals.awaitingpayment", "did you mean 'AwaitingPayment'?"),
    # End states are never polled: the interval would do nothing, in silence.
    ("interval-end-state", CCNOW + "status_intervals = { canceled = '5m' }\n",
     "ccnow.status_intervals.canceled", "'canceled' is an end state: an order in an end state "
     "is not checked again"),
    # Settled orders follow settled_interval for watch_settled: the interval was accepted and
    # did nothing, in silence.
    ("interval-settled", CCNOW + "status_intervals = { completed = '1h' }\n",
     "ccnow.status_intervals.completed", "'completed' is settled: settled orders are checked "
     "every `settled_interval` for `watch_settled`"),
    ("interval-settled-ccv", CCV + "status_intervals = { Failed = '1h' }\n",
     "ccv.status_intervals.Failed", "'Failed' is settled"),
    ("interval-case-settled", CCNOW + "status_intervals = { Refunded = '1h' }\n",
     "ccnow.status_intervals.Refunded", "did you mean 'refunded'? status words are "
     "case-sensitive; 'refunded' is settled"),
    ("interval-misspelt-ccnow", CCNOW + "status_intervals = { paypal_hld = '30m' }\n",
     "ccnow.status_intervals.paypal_hld", "did you mean 'paypal_hold'?"),
    ("interval-other-source", CCNOW + "status_intervals = { Pending = '30m' }\n",
     "ccnow.status_intervals.Pending", "did you mean 'pending'?"),
    # No request reaches port 0: `check` passed it, `check --online` said "unavailable" (75).
    ("url-port-0", CCV.replace("https://ccv.example/api/", "http://127.0.0.1:0"),
     "ccv.base_url", "port 0 cannot be connected to (port 1 to 65535)"),
    ("url-port-00", CCNOW.replace("ccnow.example/oapi", "ccnow.example:00/oapi"),
     "ccnow.url", "port 0 cannot be connected to"),
    ("url-port-0-webhook", CCV + "[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example:0/'\n"
     f"secret = '{WEBHOOK_SECRET}'\n", "sinks[0].url", "port 0 cannot be connected to"),
    ("url-port-0-public", CCV + RECEIVER.replace("integrator.example/", "integrator.example:0/"),
     "receiver.public_url", "port 0 cannot be connected to"),
    # The key went into the header as UTF-8 bytes, which the [api] token refuses for that reason.
    ("key-not-ascii-bearer", CCV.replace("t_0123", "t_\u20acuro") + "auth = 'bearer'\n",
     "ccv.api_key", "must be ASCII with auth 'bearer' or 'header'"),
    ("key-not-ascii-header", CCV.replace("t_0123", "t_\u00e9t\u00e9") + "auth = 'header'\n"
     "auth_header = 'X-Api-Key'\n", "ccv.api_key", "must be ASCII"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [pytest.param(text, key, problem, id=name) for name, text, key, problem in BAD_CONFIGS],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    error = load_error(tmp_path, text)
    assert error.key == key
    assert problem in error.problem


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value) == f"config error: {path}: -: cannot read file: No such file or directory"
    )


def test_invalid_toml_carries_the_parser_message(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[ccv]\nbase_url = "https://x.example"\napi_key = \n')
    assert error.key == "-"
    assert error.problem.startswith("invalid TOML: ")
    assert "line 3" in error.problem


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_bytes(b"[ccv]\nbase_url = '\xff'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.key, info.value.problem) == ("-", "not UTF-8 text")


def test_config_error_str_is_one_line() -> None:
    error = ConfigError("/etc/r.toml", "ccv[1].api_key", "required")
    assert str(error) == "config error: /etc/r.toml: ccv[1].api_key: required"
    assert (error.file, error.key, error.problem) == ("/etc/r.toml", "ccv[1].api_key", "required")


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("3d", 259200.0),
        ("90", 90.0),
        ("1.5h", 5400.0),
        (" 10s ", 10.0),
        (90, 90.0),
        (0, 0.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value", ["5x", "", "m", "5 m", "-5s", "5M", "1e3", "inf", True, False, -1, float("inf")]
)
def test_parse_duration_rejects(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration '"):
        parse_duration(value)


def test_parse_duration_error_text() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5x")
    assert str(info.value) == "invalid duration '5x' (use seconds or a number with ms, s, m, h, d)"


def test_durations_in_the_file_become_float_seconds(tmp_path: Path) -> None:
    (ccv,) = load(tmp_path, CCV + "poll_interval = 90\ntimeout = '1500ms'\n").ccv
    assert (ccv.poll_interval_s, ccv.timeout_s) == (90.0, 1.5)
    assert isinstance(ccv.poll_interval_s, float)


# --- secrets ----------------------------------------------------------------------------------

CCV_NO_KEY = '[ccv]\nbase_url = "https://ccv.example"\n'


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"key", "env", "credential"}, "from-key"),  # key and file together are an error
        ({"file", "env", "credential"}, "from-file"),
        ({"env", "credential"}, "from-env"),
        ({"credential"}, "from-credential"),
    ],
)
def test_secret_resolution_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: set[str], expected: str
) -> None:
    text = CCV_NO_KEY
    if "key" in given:
        text += 'api_key = "from-key"\n'
    if "file" in given:
        write(tmp_path, "from-file\n", "ccv.key")
        text += 'api_key_file = "ccv.key"\n'
    if "env" in given:
        monkeypatch.setenv("RECONCILER_CCV_API_KEY", "from-env")
    if "credential" in given:
        write(tmp_path, "from-credential\n", "credentials/ccv-api-key")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    (ccv,) = load(tmp_path, text).ccv
    assert ccv.api_key.reveal() == expected


def test_secret_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "pw-from-file\r\n", "etc/secrets/ccnow")
    path = write(
        tmp_path,
        "[ccnow]\nurl = 'https://c.example'\nclient_id = 'c'\npassword_file = 'secrets/ccnow'\n",
        "etc/reconciler.toml",
    )
    monkeypatch.chdir(tmp_path)
    (ccnow,) = load_config(path.relative_to(tmp_path)).ccnow
    assert ccnow.password.reveal() == "pw-from-file"


def test_named_accounts_take_their_own_env_and_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", "plain-env")
    monkeypatch.setenv("RECONCILER_CCNOW_SHOP_US_PASSWORD", "shop-us-env")
    write(tmp_path, "eu-credential", "credentials/ccnow-eu-password")
    write(tmp_path, "plain-credential", "credentials/ccnow-password")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    account = "[[ccnow]]\nname = '{}'\nurl = 'https://c.example'\nclient_id = 'c'\n"
    config = load(
        tmp_path, account.format("shop-us") + account.format("eu") + account.format("default")
    )
    passwords = {a.name: a.password.reveal() for a in config.ccnow}
    # With several accounts, only "default" owns the plain names.
    assert passwords == {"shop-us": "shop-us-env", "eu": "eu-credential", "default": "plain-env"}


def test_the_account_named_default_reads_its_own_names_before_the_plain_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = "[[ccnow]]\nname = '{}'\nurl = 'https://c.example'\nclient_id = 'c'\n"
    text = account.format("eu") + "password = 'eu-pw'\n" + account.format("default")
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (
        "ccnow[1].password",
        "required (or password_file, env RECONCILER_CCNOW_DEFAULT_PASSWORD or "
        "RECONCILER_CCNOW_PASSWORD, credential ccnow-default-password or ccnow-password)",
    )
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", "plain-env")
    monkeypatch.setenv("RECONCILER_CCNOW_DEFAULT_PASSWORD", "default-env")
    monkeypatch.setenv("RECONCILER_CCNOW_DEFAULT_NOTIFICATION_TOKEN", "tok_0123456789abcdef")
    config = load(tmp_path, text)
    assert {a.name: a.password.reveal() for a in config.ccnow} == {
        "eu": "eu-pw",
        "default": "default-env",
    }
    assert config.ccnow[1].notification_token == Secret("tok_0123456789abcdef")
    # The same rule for CCV's key, from a credential.
    write(tmp_path, "default-credential\n", "credentials/ccv-default-api-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    config = load(tmp_path, ccv_accounts("a") + ccv_accounts("default", key=False) + CCNOW)
    assert config.ccv[1].api_key.reveal() == "default-credential"


def test_several_accounts_do_not_share_the_plain_env_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", "plain-env")
    monkeypatch.setenv("RECONCILER_CCV_A_API_KEY", "a-env")
    account = "[[ccv]]\nname = '{}'\nbase_url = 'https://ccv.example'\n"
    error = load_error(tmp_path, account.format("a") + account.format("b"))
    assert error.key == "ccv[1].api_key"
    assert "RECONCILER_CCV_B_API_KEY" in error.problem
    assert "RECONCILER_CCV_API_KEY" not in error.problem


def test_single_named_account_falls_back_to_the_plain_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "plain-credential\n", "credentials/ccv-api-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    (ccv,) = load(tmp_path, CCV_NO_KEY + "name = 'shop'\n").ccv
    assert ccv.api_key.reveal() == "plain-credential"
    monkeypatch.setenv("RECONCILER_CCV_SHOP_API_KEY", "named-env")
    (ccv,) = load(tmp_path, CCV_NO_KEY + "name = 'shop'\n").ccv
    assert ccv.api_key.reveal() == "named-env"


def test_other_secrets_come_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_NOTIFICATION_TOKEN", "tok_0123456789abcdef")
    monkeypatch.setenv("RECONCILER_RECEIVER_SECRET", "receiver-secret-0123")
    monkeypatch.setenv("RECONCILER_SINK_WEBHOOK_2_SECRET", WEBHOOK_SECRET)
    config = load(
        tmp_path,
        CCNOW
        + "[receiver]\npublic_url = 'https://i.example'\n"
        + "[[sinks]]\ntype = 'webhook'\nname = 'webhook'\nurl = 'https://h.example'\n"
        + f"secret = '{WEBHOOK_SECRET.replace('M', 'N')}'\n"
        + "[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n",
    )
    assert config.ccnow[0].notification_token == Secret("tok_0123456789abcdef")
    assert config.receiver is not None
    assert config.receiver.secret.reveal() == "receiver-secret-0123"
    assert [(s.name, s.secret) for s in config.sinks if isinstance(s, WebhookSinkConfig)] == [
        ("webhook", Secret(WEBHOOK_SECRET.replace("M", "N"))),
        ("webhook-2", Secret(WEBHOOK_SECRET)),
    ]


def test_an_unpadded_webhook_secret_is_taken_as_the_sink_takes_it(tmp_path: Path) -> None:
    # Receivers' libraries print secrets without base64 padding; the sink signs with them, so
    # `check` must not refuse them (exit 78).
    unpadded = "whsec_" + base64.b64encode(b"0123456789abcdef012345678").decode().rstrip("=")
    assert len(unpadded.removeprefix("whsec_")) % 4
    config = load(
        tmp_path,
        CCNOW + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\nsecret = '{unpadded}'\n",
    )
    (sink,) = [s for s in config.sinks if isinstance(s, WebhookSinkConfig)]
    assert webhook_key(sink.secret.reveal()) == b"0123456789abcdef012345678"


def test_sink_secret_from_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, WEBHOOK_SECRET + "\n", "credentials/sink-hq-secret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    config = load(tmp_path, CCV + "[[sinks]]\ntype='webhook'\nname='hq'\nurl='https://h.example'\n")
    sink = config.sinks[0]
    assert isinstance(sink, WebhookSinkConfig)
    assert sink.secret == Secret(WEBHOOK_SECRET)


def test_empty_env_secret_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", "")
    error = load_error(tmp_path, CCV_NO_KEY)
    assert (error.key, error.problem) == (
        "ccv.api_key",
        "must not be empty (from env RECONCILER_CCV_API_KEY)",
    )


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "\n", "empty.key")
    error = load_error(tmp_path, CCV_NO_KEY + "api_key_file = 'empty.key'\n")
    assert (error.key, error.problem) == ("ccv.api_key_file", "must not be empty")


SECRET_TEXT = "s3cr3t-VALUE-that-must-not-leak"


@pytest.mark.parametrize(
    ("file_content", "text", "key"),
    [
        (
            SECRET_TEXT.encode() + b"\xff\xfe",
            CCV_NO_KEY + "api_key_file = 'bad.key'\n",
            "ccv.api_key_file",
        ),
        (
            f"not a token {SECRET_TEXT}\n".encode(),
            CCNOW + "notification_token_file = 'bad.key'\n",
            "ccnow.notification_token_file",
        ),
        (
            f"whsec {SECRET_TEXT}".encode(),
            CCV
            + "[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\nsecret_file = 'bad.key'\n",
            "sinks[0].secret_file",
        ),
        (
            SECRET_TEXT[:10].encode(),
            CCV + RECEIVER.replace("secret =", "secret_file = 'bad.key'\n#"),
            "receiver.secret_file",
        ),
    ],
)
def test_bad_secret_file_content_stays_out_of_the_error(
    tmp_path: Path, file_content: bytes, text: str, key: str
) -> None:
    (tmp_path / "bad.key").write_bytes(file_content)
    error = load_error(tmp_path, text)
    assert error.key == key
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert SECRET_TEXT[:10] not in shown


def test_unreadable_secret_file_names_the_file_key(tmp_path: Path) -> None:
    (tmp_path / "dir.key").mkdir()
    error = load_error(tmp_path, CCV_NO_KEY + "api_key_file = 'dir.key'\n")
    assert error.key == "ccv.api_key_file"
    assert error.problem == f"{tmp_path / 'dir.key'} is not a regular file"


def test_bad_secret_from_env_stays_out_of_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_RECEIVER_SECRET", "short-" + SECRET_TEXT[:5])
    error = load_error(tmp_path, CCV + "[receiver]\npublic_url = 'https://i.example'\n")
    assert (error.key, error.problem) == (
        "receiver.secret",
        "must be at least 16 characters (from env RECONCILER_RECEIVER_SECRET)",
    )
    assert SECRET_TEXT[:5] not in str(error)


def test_secrets_never_show_in_repr_str_or_format(tmp_path: Path) -> None:
    secret = Secret(SECRET_TEXT)
    assert SECRET_TEXT not in repr(secret)
    assert SECRET_TEXT not in str(secret)
    assert SECRET_TEXT not in f"{secret} {secret!r}"
    assert secret.reveal() == SECRET_TEXT
    config = load(
        tmp_path,
        CCV.replace("t_0123", SECRET_TEXT + "1")
        + CCNOW.replace("pw-0123", SECRET_TEXT + "2")
        + f"notification_token = '{SECRET_TEXT}4'\n"
        + RECEIVER.replace("0123456789abcdef", SECRET_TEXT + "3")
        + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\nsecret = '{WEBHOOK_SECRET}'\n",
    )
    dumped = repr(config)
    assert SECRET_TEXT not in dumped
    assert WEBHOOK_SECRET not in dumped


def test_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, CCV.replace("https://ccv.example/api/", f"https://user:{SECRET_TEXT}@ccv.example")
    )
    assert error.key == "ccv.base_url"
    assert SECRET_TEXT not in str(error)


# --- URLs -------------------------------------------------------------------------------------

# fmt: off
URL_PLACES: list[tuple[str, Callable[[str], str]]] = [
    ("ccv.base_url", lambda url: f"[ccv]\nbase_url = '{url}'\napi_key = 'k'\n"),
    ("ccnow.url", lambda url: CCNOW.replace("https://ccnow.example/oapi", url)),
    ("receiver.public_url",
     lambda url: CCV + RECEIVER.replace("https://integrator.example/reconciler/", url)),
    ("sinks[0].url",
     lambda url: CCV + f"[[sinks]]\ntype='webhook'\nurl='{url}'\nsecret='{WEBHOOK_SECRET}'\n"),
]
# fmt: on


@pytest.mark.parametrize(("key", "make"), URL_PLACES, ids=[key for key, _ in URL_PLACES])
@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "https://example.com:8443/x/",
        "http://127.0.0.1:8080",
        "http://127.9.9.9/x",
        "http://[::1]:9000/",
        "http://localhost:1",
    ],
)
def test_https_or_loopback_urls_are_accepted(
    tmp_path: Path, key: str, make: Callable[[str], str], url: str
) -> None:
    config = load(tmp_path, make(url))
    assert url.rstrip("/") in repr(config)


@pytest.mark.parametrize(("key", "make"), URL_PLACES, ids=[key for key, _ in URL_PLACES])
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1",
        "http://127.0.0.1.example.com",
        "http://[::2]",
        "http://0.0.0.0:8080",
    ],
)
def test_plain_http_needs_a_loopback_host(
    tmp_path: Path, key: str, make: Callable[[str], str], url: str
) -> None:
    error = load_error(tmp_path, make(url))
    assert (error.key, error.problem) == (
        key,
        "https required (plain http only for loopback hosts)",
    )


@pytest.mark.parametrize(
    "url",
    ["example.com", "https://", "mailto:x@example.com", "https://x.example:99999", "https://a b"],
)
def test_malformed_urls(tmp_path: Path, url: str) -> None:
    error = load_error(tmp_path, f"[ccv]\nbase_url = '{url}'\napi_key = 'k'\n")
    assert error.key == "ccv.base_url"
    assert "URL" in error.problem


# --- paths, names, alerts -------------------------------------------------------------------


def test_store_path_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(tmp_path, CCV).store_path == tmp_path / "reconciler.db"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/reconciler:/var/lib/other")
    assert load(tmp_path, CCV).store_path == Path("/var/lib/reconciler/reconciler.db")


def test_relative_paths_are_resolved_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path,
        "[store]\npath = 'state/r.db'\n"
        + CCV
        + "[[sinks]]\ntype = 'jsonl'\npath = 'out/events.jsonl'\n"
        + "[[sinks]]\ntype = 'jsonl'\npath = '/abs/events.jsonl'\n",
        "etc/reconciler.toml",
    )
    config = load_config(path)
    assert config.store_path == tmp_path / "etc" / "state" / "r.db"
    assert [s.path for s in config.sinks if isinstance(s, JsonlSinkConfig)] == [
        tmp_path / "etc" / "out" / "events.jsonl",
        Path("/abs/events.jsonl"),
    ]
    # Loading only validates: nothing is created.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cwd", "etc", "reconciler.toml"]


def test_sink_names_default_to_the_type_and_step_aside(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        CCV
        + "[[sinks]]\ntype = 'jsonl'\npath = 'a'\n"
        + "[[sinks]]\ntype = 'log'\n"
        + "[[sinks]]\ntype = 'jsonl'\npath = 'b'\n"
        + "[[sinks]]\ntype = 'jsonl'\nname = 'jsonl'\npath = 'c'\n",
    )
    assert [s.name for s in config.sinks] == ["jsonl-2", "log", "jsonl-3", "jsonl"]


def test_alerts_merge_over_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        CCV
        + "[alerts.stuck_after.ccv]\nAwaitingPayment = 0\nNewWord = '1h'\n"
        + "[alerts.stuck_after.ccnow]\npending = '1d'\n",
    )
    stuck = config.alerts.stuck_after_s
    assert ("ccv", "AwaitingPayment") not in stuck
    assert stuck[("ccv", "NewWord")] == 3600.0
    assert stuck[("ccv", "Incomplete")] == 7 * 86400.0
    assert stuck[("ccnow", "pending")] == 86400.0
    assert stuck[("ccnow", "paypal_hold")] == 7 * 86400.0


def test_status_words_the_provider_does_not_document_are_kept_verbatim(tmp_path: Path) -> None:
    # Providers add statuses; only a near miss of a documented word is taken for a typo.
    config = load(
        tmp_path,
        CCV.replace("[ccv]", "[[ccv]]")
        + "status_intervals = { AwaitingPayment = '3m', PartnerReview = '1h' }\n"
        + CCNOW
        + "status_intervals = { fraud_review = '30m', Pending_Review = '1h' }\n"
        + "[alerts.stuck_after.ccv]\nFailed = '2d'\nPartnerReview = '3d'\n"
        + "[alerts.stuck_after.ccnow]\nfraud_review = '1d'\nmark_shipped = 0\n",
    )
    assert config.ccv[0].schedule.status_intervals_s == {
        "AwaitingPayment": 180.0,
        "PartnerReview": 3600.0,
    }
    assert config.ccnow[0].schedule.status_intervals_s == {
        "fraud_review": 1800.0,
        "Pending_Review": 3600.0,
    }
    stuck = config.alerts.stuck_after_s
    # A settled status may be stuck: a failed order waits for a CCV employee.
    assert stuck[("ccv", "Failed")] == 2 * 86400.0
    assert stuck[("ccv", "PartnerReview")] == 3 * 86400.0
    assert stuck[("ccnow", "fraud_review")] == 86400.0
    assert ("ccnow", "mark_shipped") not in stuck


def test_a_byte_order_mark_before_the_file_is_ignored(tmp_path: Path) -> None:
    # Notepad writes one; the parser saw "Invalid statement (at line 1, column 1)".
    path = tmp_path / "reconciler.toml"
    path.write_bytes(b"\xef\xbb\xbf" + CCV.lstrip().encode())
    (ccv,) = load_config(path).ccv
    assert ccv.base_url == "https://ccv.example/api"


def test_ccv_and_ccnow_sections_may_be_arrays_of_one(tmp_path: Path) -> None:
    config = load(tmp_path, CCV.replace("[ccv]", "[[ccv]]") + CCNOW.replace("[ccnow]", "[[ccnow]]"))
    assert [a.name for a in config.ccv] == ["default"]
    assert [a.name for a in config.ccnow] == ["default"]


def test_each_sink_kind_has_its_own_config_type(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        CCV
        + "[[sinks]]\ntype = 'log'\n"
        + "[[sinks]]\ntype = 'jsonl'\npath = 'events.jsonl'\n"
        + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\nsecret = '{WEBHOOK_SECRET}'\n"
        + "[[sinks]]\ntype = 'command'\ncommand = ['true']\ntimeout = '2s'\n",
    )
    assert [type(s) for s in config.sinks] == [
        LogSinkConfig,
        JsonlSinkConfig,
        WebhookSinkConfig,
        CommandSinkConfig,
    ]
    # A sink carries only its own kind's keys, so nothing is left unset for the sink to re-check.
    assert not hasattr(config.sinks[0], "url")
    assert not hasattr(config.sinks[1], "command")
    assert config.sinks[3].timeout_s == 2.0


def test_a_command_sink_config_needs_a_command() -> None:
    with pytest.raises(ValueError, match="command sink 'hook' needs a command"):
        CommandSinkConfig(name="hook", command=())


# --- the example config -----------------------------------------------------------------------


def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", "l_example")
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", "example-password")
    monkeypatch.setenv("RECONCILER_RECEIVER_SECRET", "example-receiver-secret")
    monkeypatch.setenv("RECONCILER_SINK_WEBHOOK_SECRET", WEBHOOK_SECRET)


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    example_env(monkeypatch)
    config = load_config(EXAMPLE)
    assert [a.name for a in config.ccv] == ["default"]
    assert [a.name for a in config.ccnow] == ["default"]
    assert config.ccv[0].api_key.reveal() == "l_example"
    assert config.receiver is not None
    assert [(s.type, s.name) for s in config.sinks] == [
        ("jsonl", "archive"),
        ("webhook", "webhook"),
    ]
    sink = config.sinks[1]
    assert isinstance(sink, WebhookSinkConfig)
    assert sink.secret == Secret(WEBHOOK_SECRET)
    assert "http://" not in EXAMPLE.read_text(encoding="utf-8")


def test_example_config_loads_from_the_credentials_the_units_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README's install copies the example and gives secrets as the units' LoadCredential= names:
    # a secret the example asks for under another name would stop the service (78).
    values = {
        "ccv-api-key": "l_example",
        "ccnow-password": "example-password",
        "receiver-secret": "example-receiver-secret",
        "sink-webhook-secret": WEBHOOK_SECRET,
    }
    for unit in ("reconciler.service", "reconciler-catchup.service"):
        text = (EXAMPLE.parents[1] / "systemd" / unit).read_text(encoding="utf-8")
        names = re.findall(r"^LoadCredential=([\w-]+)$", text, flags=re.MULTILINE)
        assert set(values) <= set(names), unit
        credentials = tmp_path / unit
        for name in names:
            write(tmp_path, values.get(name, f"{name}-0123456789abcdef") + "\n", f"{unit}/{name}")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        config = load_config(EXAMPLE)
        assert config.ccnow[0].password.reveal() == "example-password"
        assert [s.secret for s in config.sinks if isinstance(s, WebhookSinkConfig)] == [
            Secret(WEBHOOK_SECRET)
        ]


def _example_tables() -> list[Table]:
    """The example config read as the loader reads it, with the tables it shows only commented
    out ([api], a command sink) added: every table and the keys its reader asked for."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["api"] = {"token": "api-token-0123456789"}
    data["sinks"].append({"type": "command", "command": ["/bin/true"]})
    env = {
        "RECONCILER_CCV_API_KEY": "l_example",
        "RECONCILER_CCNOW_PASSWORD": "example-password",
        "RECONCILER_RECEIVER_SECRET": "example-receiver-secret",
        "RECONCILER_SINK_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    top = Table(str(EXAMPLE), data, "")
    Loader(str(EXAMPLE), EXAMPLE.parent, env).read(top)
    tables, todo = [], [top]
    while todo:
        table = todo.pop()
        tables.append(table)
        todo.extend(table.children)
    return tables


def _documented(key: str) -> bool:
    text = EXAMPLE.read_text(encoding="utf-8")
    # A key counts when it is set or shown commented out, or appears as a [table] header.
    return bool(re.search(rf"^[#\s]*(\[+)?[\w.]*\b{key}\b[\w.]*(\]+|\s*=)", text, re.MULTILINE))


def test_example_config_documents_every_key_the_loader_reads() -> None:
    # The tables' readers are the one list of keys: each key one asks for, given or not, is
    # shown in the example, set or commented out; and none the example gives is left unread.
    tables = _example_tables()
    assert {t.key for t in tables} >= {"store", "ccv", "ccnow", "receiver", "api", "alerts"}
    assert {t.key for t in tables} >= {f"sinks[{i}]" for i in range(3)}
    assert all(table.unread() == [] for table in tables)
    asked = {key for table in tables for key in table.asked}
    assert {"max_connections", "api_key_file", "secret_file", "command", "token"} <= asked
    assert [key for key in sorted(asked) if not _documented(key)] == []


def test_every_key_the_example_shows_commented_out_is_read() -> None:
    # A key shown only as `# key = ...` is one a reader asks for: no example of a dead key.
    text = EXAMPLE.read_text(encoding="utf-8")
    shown = set(re.findall(r"^#\s*(\w+)\s*=", text, re.MULTILINE))
    asked = {key for table in _example_tables() for key in table.asked}
    assert shown and sorted(shown - asked) == []


# A key no reader asks for, in each kind of table: refused naming it (78), not ignored.
UNKNOWN_IN_EACH_TABLE = [
    ("top", "colour = 1\n" + CCV, "colour", "unknown key"),
    ("store", CCV + "[store]\ncolour = 1\n", "store.colour", "unknown key"),
    ("ccv", CCV + "colour = 1\n", "ccv.colour", "unknown key"),
    ("ccv-array", ccv_accounts("a", "b") + "colour = 1\n", "ccv[1].colour", "unknown key"),
    ("ccnow", CCNOW + "colour = 1\n", "ccnow.colour", "unknown key"),
    ("receiver", CCV + RECEIVER + "colour = 1\n", "receiver.colour", "unknown key"),
    (
        "api",
        CCV + "[api]\ntoken = 'api-token-0123456789'\ncolour = 1\n",
        "api.colour",
        "unknown key",
    ),
    ("sink-log", CCV + "[[sinks]]\ntype = 'log'\ncolour = 1\n", "sinks[0].colour", "unknown key"),
    (
        "sink-jsonl",
        CCV + "[[sinks]]\ntype = 'jsonl'\npath = 'e'\ncolour = 1\n",
        "sinks[0].colour",
        "unknown key",
    ),
    (
        "sink-webhook",
        CCV + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n"
        f"secret = '{WEBHOOK_SECRET}'\ncolour = 1\n",
        "sinks[0].colour",
        "unknown key",
    ),
    (
        "sink-command",
        CCV + "[[sinks]]\ntype = 'command'\ncommand = ['true']\ncolour = 1\n",
        "sinks[0].colour",
        "unknown key",
    ),
    (
        "sink-webhook-in-log",
        CCV + "[[sinks]]\ntype = 'log'\nsecret_file = 'k'\n",
        "sinks[0].secret_file",
        "not a key of a log sink",
    ),
    (
        "sink-command-in-webhook",
        CCV + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n"
        f"secret = '{WEBHOOK_SECRET}'\ncommand = ['true']\n",
        "sinks[0].command",
        "not a key of a webhook sink",
    ),
    (
        "sink-jsonl-in-command",
        CCV + "[[sinks]]\ntype = 'command'\ncommand = ['true']\npath = 'e'\n",
        "sinks[0].path",
        "not a key of a command sink",
    ),
    ("alerts", CCV + "[alerts]\ncolour = 1\n", "alerts.colour", "unknown key"),
    (
        "stuck-after",
        CCV + "[alerts.stuck_after]\ncolour = {}\n",
        "alerts.stuck_after.colour",
        "unknown source (use ccv or ccnow)",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(text, key, problem, id=name)
        for name, text, key, problem in UNKNOWN_IN_EACH_TABLE
    ],
)
def test_an_unknown_key_in_each_table_is_refused_naming_it(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (key, problem)


# --- secrets with line breaks ----------------------------------------------------------------

LINE_BREAK = "must not contain a line break, control or invisible character"


@pytest.mark.parametrize(
    ("setup", "text", "key", "origin"),
    [
        ({}, CCV_NO_KEY + 'api_key = "t_0123\\n"\n', "ccv.api_key", ""),
        # A file's trailing line ends, however many, are no part of it (test_secret_line_ends).
        (
            {"ccv.key": "t_01\n23\n"},
            CCV_NO_KEY + "api_key_file = 'ccv.key'\n",
            "ccv.api_key_file",
            "",
        ),
        (
            {"env": "pw-0123\r\n"},
            "[ccnow]\nurl = 'https://c.example'\nclient_id = 'c'\n",
            "ccnow.password",
            " (from env RECONCILER_CCNOW_PASSWORD)",
        ),
        (
            {"credentials/receiver-secret": "0123456789abcdef\x00\n"},
            CCV + "[receiver]\npublic_url = 'https://i.example'\n",
            "receiver.secret",
            " (from credential receiver-secret)",
        ),
        (
            {},
            CCV + f"[[sinks]]\ntype = 'webhook'\nurl = 'https://h.example'\n"
            f'secret = "{WEBHOOK_SECRET}\\u200b"\n',
            "sinks[0].secret",
            "",
        ),
    ],
)
def test_secret_with_a_line_break_is_refused_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, str],
    text: str,
    key: str,
    origin: str,
) -> None:
    for name, value in setup.items():
        if name == "env":
            monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", value)
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(value.encode())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    error = load_error(tmp_path, text)
    assert (error.key, error.problem) == (key, LINE_BREAK + origin)


def test_secret_file_loses_exactly_one_line_end(tmp_path: Path) -> None:
    for content in (b"t_0123", b"t_0123\n", b"t_0123\r\n"):
        (tmp_path / "ccv.key").write_bytes(content)
        (ccv,) = load(tmp_path, CCV_NO_KEY + "api_key_file = 'ccv.key'\n").ccv
        assert ccv.api_key.reveal() == "t_0123"


def test_config_lists_the_files_that_hold_secrets(tmp_path: Path) -> None:
    write(tmp_path, "pw-0123\n", "ccnow.pw")
    config = load(
        tmp_path,
        CCV + "[ccnow]\nurl = 'https://c.example'\nclient_id = 'c'\npassword_file = 'ccnow.pw'\n",
    )
    assert config.secret_files == (tmp_path / "reconciler.toml", tmp_path / "ccnow.pw")
    assert load(tmp_path, CCV_NO_KEY + "api_key_file = 'ccnow.pw'\n").secret_files == (
        tmp_path / "ccnow.pw",
    )


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8081/api/v1/ccv/orders"),
        ("::1", "http://[::1]:8081/api/v1/ccv/orders"),
    ],
)
def test_commands_reach_the_api_where_it_listens(host: str, url: str) -> None:
    api = ApiConfig(listen_host=host, listen_port=8081, token=Secret("t" * 32))
    assert api.url("/api/v1/ccv/orders") == url


@pytest.mark.parametrize("word", ["AwaitingShipment", "ErpProcessing", "New2", "refund"])
def test_a_status_word_near_but_not_one_slip_from_a_documented_one_is_a_new_one(
    tmp_path: Path, word: str
) -> None:
    # A provider adding AwaitingShipment beside AwaitingPayment must be configurable.
    source, text = ("ccnow", CCNOW) if word == "refund" else ("ccv", CCV)
    config = load_config(write(tmp_path, text + f"[alerts.stuck_after.{source}]\n{word} = '1d'\n"))
    assert (source, word) in config.alerts.stuck_after_s


def test_a_ccv_key_beyond_ascii_is_refused_only_where_a_header_carries_it_as_it_is(
    tmp_path: Path,
) -> None:
    key = "t_\u20acuro-0123"
    error = load_error(tmp_path, CCV.replace("t_0123", key) + "auth = 'bearer'\n")
    assert (error.key, key in str(error)) == ("ccv.api_key", False)
    # Basic auth encodes it (base64 of its bytes): taken as before.
    assert load(tmp_path, CCV.replace("t_0123", key)).ccv[0].api_key.reveal() == key
