"""Config values `check` passed and a later command tripped on (probe 30): nesting the parser
cannot take, URL hosts no request can name, paths that name a directory or the config itself,
control characters, blank secrets, a retry delay nothing honours, loop names spelt otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler import eventloop
from reconciler.config import Config, ConfigError, JsonlSinkConfig, load_config
from reconciler.sources.http import retry_delay
from reconciler.store import WriterLock
from tests.conftest import call_cli, cli_env, write_config

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"
CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\npassword = 'pw-0123'\n"
RECEIVER = "[receiver]\npublic_url = 'https://i.example'\nsecret = '0123456789abcdef'\n"
WEBHOOK = (
    "[[sinks]]\ntype = 'webhook'\nurl = 'https://hooks.example/in'\n"
    "secret = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3'\n"
)


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


@pytest.mark.parametrize(
    "value", ["[" * 600 + "]" * 600, "{a=" * 600 + "1" + "}" * 600], ids=["arrays", "tables"]
)
async def test_a_value_nested_too_deep_is_a_config_error(tmp_path: Path, value: str) -> None:
    # Was a RecursionError traceback, exit 70.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f"x = {value}\n" + CCV, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr.strip()) == (
        78,
        f"config error: {cfg}: -: invalid TOML: it nests too deep",
    )


@pytest.mark.parametrize(
    ("host", "text"),
    [("a..b", "a..b"), (".example", ".example"), ("a" * 64 + ".example", "a" * 64 + ".example")],
    ids=["empty-label", "leading-dot", "long-label"],
)
@pytest.mark.parametrize(
    ("key", "url_of"),
    [
        ("ccv.base_url", lambda host: CCV.replace("ccv.example", host) + CCNOW),
        ("ccnow.url", lambda host: CCV + CCNOW.replace("ccnow.example", host)),
        ("receiver.public_url", lambda host: CCV + RECEIVER.replace("i.example", host)),
        ("sinks[0].url", lambda host: CCV + WEBHOOK.replace("hooks.example", host)),
    ],
    ids=["ccv", "ccnow", "receiver", "webhook"],
)
def test_a_url_host_no_request_can_name_is_a_config_error(
    tmp_path: Path, key: str, url_of: object, host: str, text: str
) -> None:
    # `check` passed it; every request then failed with a UnicodeError traceback (IDNA).
    assert callable(url_of)
    error = load_error(tmp_path, url_of(host))
    assert (error.key, error.problem) == (
        key,
        f"invalid host '{text}' (each dot-separated label is 1 to 63 characters)",
    )


def test_a_host_the_client_cannot_encode_is_a_config_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, CCV.replace("ccv.example", "1א.example"))
    assert (error.key, error.problem) == (
        "ccv.base_url",
        "invalid host '1א.example' (not a name IDNA can encode)",
    )


def test_hosts_a_request_can_name_are_accepted(tmp_path: Path) -> None:
    # א1 (a right-to-left label ending in a digit): the client sends it as xn--1-zhc, as it did
    # before hosts were checked; Python's older IDNA codec refused it.
    hosts = ("a" * 63 + ".example", "bücher.example", "א1.example", "a_b.example", "x.", "[::1]")
    for host in (*hosts, "ccv.example."):
        url = f"https://{host}/api"
        config = load(tmp_path, CCV.replace("https://ccv.example/api/", url))
        assert config.ccv[0].base_url == url


async def test_check_refuses_the_config_file_as_the_store(tmp_path: Path) -> None:
    # `check` said ok; every other command then refused the store (74).
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text("[store]\npath = 'reconciler.toml'\n" + CCV, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr.strip()) == (
        78,
        f"config error: {cfg}: store.path: {cfg} is this config file; "
        "the store needs a file of its own",
    )


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("[store]\npath = 'ts/newdir/'\n" + CCV, "store.path", "ts/newdir/"),
        ("[store]\npath = 'ts/.'\n" + CCV, "store.path", "ts/."),
        (CCV + "[[sinks]]\ntype = 'jsonl'\npath = 'out/'\n", "sinks[0].path", "out/"),
    ],
    ids=["store", "store-dot", "jsonl"],
)
async def test_a_path_that_names_a_directory_is_a_config_error(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    # A file named `ts/newdir` (or `out`) was made without the `/`, in silence.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(text, encoding="utf-8")
    for command in ("check", "orders"):
        result = await call_cli("--config", cfg, command)
        assert (result.code, result.stderr.strip()) == (
            78,
            f"config error: {cfg}: {key}: '{value}' names a directory; give the path of a file",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconciler.toml"]


@pytest.mark.parametrize("ending", ["/", "/."])
async def test_a_path_ending_as_a_directory_that_leads_to_a_file_is_that_file(
    tmp_path: Path, ending: str
) -> None:
    # `st/r.db/` with st/r.db the live database (and a jsonl path alike) worked before paths
    # ending as a directory's were refused; then every command exited 78 after an upgrade.
    (tmp_path / "st").mkdir()
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text("[store]\npath = 'st/r.db'\n" + CCV, encoding="utf-8")
    assert (await call_cli("--config", cfg, "track", "ccv", "ORDER-1")).code == 0
    (tmp_path / "events.jsonl").write_text("", encoding="utf-8")
    sink = f"[[sinks]]\ntype = 'jsonl'\npath = 'events.jsonl{ending}'\n"
    cfg.write_text(f"[store]\npath = 'st/r.db{ending}'\n" + CCV + sink, encoding="utf-8")
    config = load_config(cfg)
    assert config.store_path == tmp_path / "st" / "r.db"
    (jsonl,) = config.sinks
    assert isinstance(jsonl, JsonlSinkConfig) and jsonl.path == tmp_path / "events.jsonl"
    assert (await call_cli("--config", cfg, "check")).code == 0
    result = await call_cli("--config", cfg, "orders")
    assert result.code == 0 and "ORDER-1" in result.stdout, result.stderr
    # `..` is never the file: the directory it is in.
    cfg.write_text("[store]\npath = 'st/r.db/..'\n" + CCV, encoding="utf-8")
    assert load_error(tmp_path, cfg.read_text()).problem == (
        "'st/r.db/..' names a directory; give the path of a file"
    )


@pytest.mark.parametrize("kind", ["fifo", "device"])
async def test_a_jsonl_path_ending_in_a_slash_that_leads_to_a_fifo_or_device_is_that_file(
    tmp_path: Path, kind: str
) -> None:
    # A log shipper's FIFO, or `/dev/stdout/` under a pipe or journald, loaded before; then it
    # was refused as "names a directory" (78), and `check` and `run` could disagree on it.
    if kind == "fifo":
        target = tmp_path / "ship"
        os.mkfifo(target)
    else:
        target = Path("/dev/null")
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n"
        + CCV
        + f"[[sinks]]\ntype = 'jsonl'\npath = '{target}/'\n",
        encoding="utf-8",
    )
    (jsonl,) = load_config(cfg).sinks
    assert isinstance(jsonl, JsonlSinkConfig) and jsonl.path == target
    result = await call_cli("--config", cfg, "check")
    assert result.code == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (CCV + CCNOW.replace("client_id = 'c'", 'client_id = "c\\nX"'), "ccnow.client_id"),
        (CCV + CCNOW + 'store_id = "s\\u0000"\n', "ccnow.store_id"),
        (CCV + 'name = "shop\\t"\n', "ccv.name"),
        ('[store]\npath = "db\\u0000"\n' + CCV, "store.path"),
        (
            CCV + "[api]\ntoken = '0123456789abcdef'\nccv_order_id_fields = [\"id\\n\"]\n",
            "api.ccv_order_id_fields",
        ),
    ],
    ids=["client_id", "store_id", "name", "path", "order-id-field"],
)
def test_a_control_character_in_a_string_is_a_config_error(
    tmp_path: Path, text: str, key: str
) -> None:
    error = load_error(tmp_path, text)
    assert error.key == key
    assert "control character" in error.problem


@pytest.mark.parametrize("blank", [" ", "    "])
async def test_a_secret_of_white_space_alone_is_a_config_error(tmp_path: Path, blank: str) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(CCV + CCNOW.replace("'pw-0123'", f"'{blank}'"), encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr.strip()) == (
        78,
        f"config error: {cfg}: ccnow.password: must not be only white space",
    )


@pytest.mark.parametrize("backoff", ["36500d", "1m", "31s", "30s"])
async def test_a_retry_backoff_above_the_longest_wait_is_taken_as_that_wait(
    tmp_path: Path, backoff: str
) -> None:
    # Every wait was always capped at 30 s, so "1m" meant 30 s and worked; refused, a config
    # that ran yesterday stopped the daemon after an upgrade (78).
    ccv = load(tmp_path, CCV + f"retry_backoff = '{backoff}'\n").ccv[0]
    ccnow = load(tmp_path, CCNOW + f"retry_backoff = '{backoff}'\n").ccnow[0]
    for retry in (ccv.retry, ccnow.retry):
        assert [retry_delay(retry, n, None, jitter=max) for n in range(3)] == [30.0] * 3
    result = await call_cli("--config", tmp_path / "reconciler.toml", "check")
    assert result.code == 0, result.stderr


@pytest.mark.parametrize(
    ("choice", "chosen"),
    [
        ("UVLOOP", "uvloop"),
        ("Asyncio", "asyncio"),
        (" asyncio", "asyncio"),
        ("auto ", "uvloop"),
        ("", "uvloop"),
    ],
)
async def test_an_event_loop_in_any_case_or_padded_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choice: str, chosen: str
) -> None:
    # A systemd unit with `RECONCILER_EVENT_LOOP=Asyncio` started before; refused, it did not
    # start after an upgrade. And it is the loop named, not `auto`'s (uvloop: installed here).
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + CCV, encoding="utf-8")
    result = await call_cli("--config", cfg, "check", env=cli_env(RECONCILER_EVENT_LOOP=choice))
    assert result.code == 0, result.stderr
    monkeypatch.setenv("RECONCILER_EVENT_LOOP", choice)
    assert eventloop.loop_name() == chosen


@pytest.mark.parametrize("choice", ["tokio", "uv loop", "asyncio,uvloop"])
async def test_an_event_loop_that_is_none_of_the_words_is_refused(
    tmp_path: Path, choice: str
) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + CCV, encoding="utf-8")
    result = await call_cli("--config", cfg, "check", env=cli_env(RECONCILER_EVENT_LOOP=choice))
    assert result.code == 78, result.stderr
    assert "RECONCILER_EVENT_LOOP" in result.stderr and repr(choice) in result.stderr


async def test_replay_beside_another_writer_names_the_holder_not_a_daemon(
    tmp_path: Path,
) -> None:
    # A `catch-up` (or any writer) holding the store was called "running daemon".
    cfg = write_config(tmp_path, extra=CCV.replace("[ccv]", "[[ccv]]\nname = 'shop'"))
    assert (await call_cli("--config", cfg, "track", "ccv", "ORDER-1", env=cli_env())).code == 0
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()
    try:
        result = await call_cli("--config", cfg, "replay", "--sink", "jsonl", env=cli_env())
    finally:
        lock.release()
    assert result.code == 0, result.stderr
    queued = [json.loads(line) for line in result.stderr.splitlines() if "replay.queued" in line]
    assert [line["delivered_by"] for line in queued] == [
        f"the process holding the store (pid {os.getpid()})"
    ]
