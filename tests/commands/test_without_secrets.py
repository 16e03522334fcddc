"""Commands that ask no provider, sign nothing and send to no sink (`status`, `orders`, `events`,
`track`, `untrack`) run on the config without its secrets; every other command still needs them.
The account `default` finds its secrets the same way whether the config writes its name or not.
README's `rctl` helper loads what the units load, so its commands work on the example config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.config import ConfigError, MissingSecret, load_config
from reconciler.redact import config_secrets
from reconciler.store import WriterLock
from tests.conftest import (
    REPO,
    WEBHOOK_SECRET,
    Result,
    assert_one_line,
    call_cli,
    cli_env,
    environ,
    free_port,
    run_cli,
    write_config,
)
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV, Reply
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import submission_state

ORDER = "3c2b1a00-0000-4000-8000-000000000001"
CCNOW_ORDER = "396101142"
SECRET_ENV = ("RECONCILER_CCV_API_KEY", "RECONCILER_CCNOW_PASSWORD")
# Every kind of secret the config takes, none of them given.
NO_SECRETS = (
    '[receiver]\npublic_url = "https://integrator.example/reconciler"\n'
    f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
    '[[sinks]]\ntype = "webhook"\nurl = "https://integrator.example/hooks"\n'
)
KEY_MISSING = "ccv.api_key: required (or api_key_file"


def bare_env(**extra: str) -> dict[str, str]:
    """A CLI environment with no secret in it (a monitoring user's)."""
    env = {k: v for k, v in cli_env().items() if k not in (*SECRET_ENV, "CREDENTIALS_DIRECTORY")}
    return env | extra


def no_secrets_config(tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow) -> Path:
    return write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow, extra=NO_SECRETS)


async def test_only_the_commands_that_use_a_secret_need_it(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = no_secrets_config(tmp_path, fake_ccv, fake_ccnow)
    env = bare_env()
    args: tuple[str, ...]
    for args in (
        ("check",),
        ("catch-up",),
        ("replay", "--sink", "webhook"),
        ("notification-url", "ccv", "--ref", "INV-1"),
        ("ccv", "submit", "-"),
        ("ccnow", "ship", CCNOW_ORDER, "--dry-run"),
        ("run",),
    ):
        result = await call_cli("--config", cfg, *args, env=env, stdin=b"{}")
        assert_one_line(result, 78, KEY_MISSING)
    assert not (tmp_path / "reconciler.db").exists()
    for args in (
        ("track", "ccv", ORDER),
        ("track", "ccnow", CCNOW_ORDER),
        ("status",),
        ("orders", "--json"),
        ("events", "--json"),
        ("untrack", "ccnow", "--account", "default", CCNOW_ORDER),
    ):
        result = await call_cli("--config", cfg, *args, env=env)
        assert result.code == 0, (args, result.stderr)
        assert "config error" not in result.stderr, args
    orders = await call_cli("--config", cfg, "orders", "--json", env=env)
    assert [o["order_id"] for o in json.loads(orders.stdout)] == [ORDER]
    status = json.loads((await call_cli("--config", cfg, "status", "--json", env=env)).stdout)
    assert [s["name"] for s in status["sinks"]] == ["log", "jsonl", "webhook"]
    # The secrets given one by one: `check` names the first one still missing.
    env = bare_env(RECONCILER_CCV_API_KEY=CCV_KEY, RECONCILER_CCNOW_PASSWORD=CCNOW_PASSWORD)
    assert_one_line(await call_cli("--config", cfg, "check", env=env), 78, "receiver.secret")


async def test_a_secret_that_is_given_is_checked_all_the_same(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=NO_SECRETS)
    for name, value, key in (
        ("RECONCILER_RECEIVER_SECRET", "short-secret", "receiver.secret"),
        ("RECONCILER_API_TOKEN", "short-token", "api.token"),
        ("RECONCILER_SINK_WEBHOOK_SECRET", "not-whsec-1234567890", "sinks[1].secret"),
        ("RECONCILER_CCV_API_KEY", "t_key\nwith-a-break", "ccv.api_key"),
    ):
        result = await call_cli("--config", cfg, "status", env=bare_env(**{name: value}))
        assert_one_line(result, 78, f"{key}: ", f"(from env {name})")
        assert value.split("\n")[0] not in result.stderr


async def test_other_keys_and_a_secret_file_are_judged_as_for_any_command(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='poll_interval = "soon"\n')
    result = await call_cli("--config", cfg, "status", env=bare_env())
    assert_one_line(result, 78, "ccv.poll_interval: invalid duration 'soon'")
    # A secret's file this user cannot read (here: missing) is not given, for `status`; the
    # commands that use the secret report it.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='api_key_file = "no-such-key"\n')
    assert (await call_cli("--config", cfg, "status", env=bare_env())).code == 0
    result = await call_cli("--config", cfg, "check", env=bare_env())
    assert_one_line(
        result,
        78,
        f"ccv.api_key_file: cannot read {cfg.parent / 'no-such-key'}: No such file or directory",
    )
    # A file that can be read is a secret given: checked.
    (tmp_path / "no-such-key").write_text("\n\n", encoding="utf-8")
    result = await call_cli("--config", cfg, "status", env=bare_env())
    # (Its trailing line ends are no part of it: nothing is left.)
    assert_one_line(result, 78, "ccv.api_key_file: must not be empty")


def test_a_secret_loaded_as_missing_raises_its_config_error_when_used(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        '[ccv]\nbase_url = "https://ccv.example"\n[receiver]\npublic_url = "https://i.example"\n'
        'secret = "receiver-secret-0123456789"\n',
        encoding="utf-8",
    )
    with environ(bare_env()):
        with pytest.raises(ConfigError) as required:
            load_config(cfg)
        config = load_config(cfg, secrets_optional=True)
    key = config.ccv[0].api_key
    assert isinstance(key, MissingSecret)
    assert (repr(key), str(key), f"{key}") == ("Secret(missing)",) * 3
    with pytest.raises(ConfigError) as used:
        key.reveal()
    assert str(used.value) == str(required.value)
    assert config.receiver is not None
    # A secret that is given loads as always, and only it is masked in what the program keeps.
    assert config.receiver.secret.reveal() == "receiver-secret-0123456789"
    assert config_secrets(config) == ("receiver-secret-0123456789",)


async def test_track_settling_through_the_daemon_is_the_one_step_that_needs_the_token(
    tmp_path: Path,
) -> None:
    async with FakeCCVWrites() as fake:
        fake.submit_replies = [Reply(DROP)]
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        body = json.dumps(submit_body(externalReference="shop-8")).encode()
        assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=body)).code == 75
        no_token = write_config(tmp_path, ccv=fake, extra=f'[api]\nlisten = "127.0.0.1:{port}"\n')
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()  # what a running daemon holds
    try:
        args = ("--config", no_token, "track", "ccv", ORDER, "--ref", "shop-8")
        # A process: the writer lock's POSIX lock is not seen by the process that holds it.
        result = await run_cli(*args, env=bare_env())
    finally:
        lock.release()
    # The orders are tracked (their log line), then the step that needs the token says so.
    assert result.code == 78, result.stderr
    assert "Traceback" not in result.stderr
    tracked, error = result.stderr.strip().splitlines()
    assert json.loads(tracked)["message"] == "orders.tracked"
    assert error == f"config error: {no_token}: api.token: required (or token_file, env " + (
        "RECONCILER_API_TOKEN, credential api-token)"
    )
    assert submission_state(tmp_path, "shop-8") == "uncertain"
    orders = await call_cli("--config", no_token, "orders", "--json", env=bare_env())
    assert [o["order_id"] for o in json.loads(orders.stdout)] == [ORDER]


@pytest.mark.parametrize("where", ["env", "credential"])
async def test_the_default_account_reads_its_own_names_whether_named_or_not(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, where: str
) -> None:
    secrets = {"ccv-default-api-key": CCV_KEY, "ccnow-default-password": CCNOW_PASSWORD}
    if where == "env":
        env = bare_env(
            RECONCILER_CCV_DEFAULT_API_KEY=CCV_KEY,
            RECONCILER_CCNOW_DEFAULT_PASSWORD=CCNOW_PASSWORD,
        )
    else:
        (tmp_path / "credentials").mkdir()
        for credential, value in secrets.items():
            (tmp_path / "credentials" / credential).write_text(value + "\n", encoding="utf-8")
        env = bare_env(CREDENTIALS_DIRECTORY=str(tmp_path / "credentials"))
    # `[ccv]` without a name is the account `default` too (`ccv/default` in every event).
    for name in ('name = "default"\n', ""):
        cfg = write_config(
            tmp_path, ccv=fake_ccv, ccnow=fake_ccnow, ccv_extra=name, ccnow_extra=name
        )
        result = await call_cli("--config", cfg, "check", "--online", env=env)
        assert result.code == 0, (name, result.stderr)
        for value in secrets.values():
            assert value not in result.stdout + result.stderr


# --- README's `rctl` helper


def readme_helper() -> tuple[list[str], list[list[str]]]:
    """The credential names README's `rctl` loads, and the argv of every `rctl` line README
    shows (in "Running commands by hand" and "Upgrading")."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    helper = re.search(r"^rctl\(\) \{\n(.*?)^\}\n", readme, re.MULTILINE | re.DOTALL)
    assert helper is not None
    names = re.findall(r"-p LoadCredential=([\w-]+)", helper[1])
    assert "LoadCredential=" not in re.sub(r"-p LoadCredential=[\w-]+", "", helper[1])
    lines = re.findall(r"^rctl ([^\n#]+?)\s*(?:#.*)?$", readme, re.MULTILINE)
    return names, [line.split() for line in lines]


def unit_credentials() -> set[str]:
    names: set[str] = set()
    for unit in ("reconciler.service", "reconciler-catchup.service"):
        text = (REPO / "systemd" / unit).read_text(encoding="utf-8")
        names |= set(re.findall(r"^LoadCredential=([\w-]+)$", text, re.MULTILINE))
    return names


def example_config(tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow) -> Path:
    """The shipped example, its providers the fakes and its files under tmp_path."""
    text = (REPO / "config" / "reconciler.example.toml").read_text(encoding="utf-8")
    for old, new in (
        ("https://boarding.ccv.example", fake_ccv.base_url),
        ("https://www.ccnow.com/cgi-local/oapi_receive.cgi", fake_ccnow.url),
        ("/var/lib/reconciler/events.jsonl", str(tmp_path / "events.jsonl")),
    ):
        assert old in text, old
        text = text.replace(old, new)
    cfg = tmp_path / "etc" / "reconciler.toml"
    cfg.parent.mkdir()
    cfg.write_text(text, encoding="utf-8")
    return cfg


async def test_the_readme_helper_runs_its_commands_on_the_example_config(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    names, command_lines = readme_helper()
    assert set(names) == unit_credentials()
    assert {"check", "track", "orders"} <= {argv[0] for argv in command_lines}
    # What systemd-run gives the command: the credentials found of those it names, the state
    # directory, the config in the environment, and nothing else.
    values = {
        "ccv-api-key": CCV_KEY,
        "ccnow-password": CCNOW_PASSWORD,
        "ccnow-notification-token": "ccnow-token-0123456789abcdef",
        "receiver-secret": "receiver-secret-0123456789abcdef",
        "sink-webhook-secret": WEBHOOK_SECRET,
        "api-token": "api-token-0123456789abcdef",
    }
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in names:
        (credentials / name).write_text(values[name] + "\n", encoding="utf-8")
    (tmp_path / "state").mkdir()
    env = bare_env(
        CREDENTIALS_DIRECTORY=str(credentials),
        STATE_DIRECTORY=str(tmp_path / "state"),
        RECONCILER_CONFIG=str(example_config(tmp_path, fake_ccv, fake_ccnow)),
    )
    for argv in command_lines:
        result: Result = await call_cli(*argv, env=env)
        assert result.code == 0, (argv, result.stderr)
    assert (tmp_path / "state" / "reconciler.db").exists()


def test_the_readme_helper_runs_as_the_units_user_with_their_modes() -> None:
    # Without the units' UMask= a command by hand made the files it created 0644.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    helper = re.search(r"^rctl\(\) \{\n(.*?)^\}\n", readme, re.MULTILINE | re.DOTALL)
    assert helper is not None
    given = dict(re.findall(r"-p (\w+)=(\S+)", helper[1]))
    keys = ("DynamicUser", "User", "StateDirectory", "StateDirectoryMode", "UMask")
    for unit in ("reconciler.service", "reconciler-catchup.service"):
        text = (REPO / "systemd" / unit).read_text(encoding="utf-8")
        units = dict(re.findall(r"^(\w+)=(\S+)$", text, re.MULTILINE))
        assert {k: given.get(k) for k in keys} == {k: units[k] for k in keys}, unit
