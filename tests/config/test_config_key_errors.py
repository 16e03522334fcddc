"""`reconciler check` on a config with a misspelt key: the message names the key as written,
whichever key it stands for (a required one too), in every table and sink kind. Each expected
line was made by running `check` on main before the keys came from the readers (issue 12): the
first problem reported, and its words, stay as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env

CCV = '[ccv]\nbase_url = "https://ccv.example/api/"\napi_key = "t_0123"\n'

CASES = [
    pytest.param(
        "",
        '[ccvv]\nbase_url = "https://ccv.example/"\napi_key = "t_0123"\n',
        "ccvv: unknown key",
        id="top_table_typo_of_the_only_account",
    ),
    pytest.param(
        "",
        CCV + '[recevier]\nlisten = "127.0.0.1:8080"\n',
        "recevier: unknown key",
        id="top_optional_table_typo",
    ),
    pytest.param(
        'keep_event = "30d"\n',
        CCV,
        "store.keep_event: unknown key",
        id="store_optional_key_typo",
    ),
    pytest.param(
        "",
        '[ccv]\nbase_url = "https://ccv.example/"\napi_key_flie = "key.txt"\n',
        "ccv.api_key_flie: unknown key",
        id="ccv_required_key_typo",
    ),
    pytest.param(
        "",
        '[ccv]\nbaseurl = "https://ccv.example/"\napi_key = "t_0123"\n',
        "ccv.baseurl: unknown key",
        id="ccv_required_url_typo",
    ),
    pytest.param(
        "",
        CCV + 'poll_intervall = "5m"\n',
        "ccv.poll_intervall: unknown key",
        id="ccv_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV + 'min_intervl = "10h"\nmax_interval = "30s"\n',
        "ccv.min_intervl: unknown key",
        id="ccv_optional_key_typo_that_a_default_contradicts",
    ),
    pytest.param(
        "",
        (
            "[[ccv]]\n"
            'name = "a"\n'
            'base_url = "https://ccv.example/"\n'
            'api_key = "t_0123"\n'
            "[[ccv]]\n"
            'name = "b"\n'
            'base_url = "https://ccv.example/"\n'
            'api_kye = "t_0123"\n'
        ),
        "ccv[1].api_kye: unknown key",
        id="ccv_accounts_item_required_key_typo",
    ),
    pytest.param(
        "",
        (
            "[[ccv]]\n"
            'name = "a"\n'
            'base_url = "https://ccv.example/"\n'
            'api_key = "t_0123"\n'
            'timeot = "5s"\n'
            "[[ccv]]\n"
            'name = "A B"\n'
            'base_url = "https://ccv.example/"\n'
            'api_key = "t_0123"\n'
        ),
        "ccv[0].timeot: unknown key",
        id="ccv_accounts_item_typo_beats_a_later_bad_name",
    ),
    pytest.param(
        "",
        (
            "[ccnow]\n"
            'url = "https://ccnow.example/oapi"\n'
            'client_idd = "amylove"\n'
            'password = "pw-0123"\n'
        ),
        "ccnow.client_idd: unknown key",
        id="ccnow_required_key_typo",
    ),
    pytest.param(
        "",
        (
            "[ccnow]\n"
            'url = "https://ccnow.example/oapi"\n'
            'client_id = "amylove"\n'
            'password = "pw-0123"\n'
            "batchsize = 10\n"
        ),
        "ccnow.batchsize: unknown key",
        id="ccnow_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV
        + '[receiver]\npublic_ulr = "https://integrator.example/"\nsecret = "0123456789abcdef"\n',
        "receiver.public_ulr: unknown key",
        id="receiver_required_key_typo",
    ),
    pytest.param(
        "",
        CCV
        + (
            "[receiver]\n"
            'public_url = "https://integrator.example/"\n'
            'secret = "0123456789abcdef"\n'
            "max_conections = 5\n"
        ),
        "receiver.max_conections: unknown key",
        id="receiver_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[api]\ntokne = "0123456789abcdef0123456789abcdef"\n',
        "api.tokne: unknown key",
        id="api_required_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[api]\ntoken = "0123456789abcdef0123456789abcdef"\nmax_bdy = 2048\n',
        "api.max_bdy: unknown key",
        id="api_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[alerts.stuck_aftr.ccv]\nPending = "1d"\n',
        "alerts.stuck_aftr: unknown key",
        id="alerts_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[alerts.stuck_after.ccvv]\nPending = "1d"\n',
        "alerts.stuck_after.ccvv: unknown source (use ccv or ccnow)",
        id="alerts_stuck_after_source_typo",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "log"\ntimout = "5s"\n',
        "sinks[0].timout: unknown key",
        id="log_sink_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "jsonl"\npaht = "e.jsonl"\n',
        "sinks[0].paht: unknown key",
        id="jsonl_sink_required_key_typo",
    ),
    pytest.param(
        "",
        CCV
        + (
            "[[sinks]]\n"
            'type = "webhook"\n'
            'ulr = "https://hook.example/"\n'
            'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
        ),
        "sinks[0].ulr: unknown key",
        id="webhook_sink_required_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "command"\ncomand = ["/bin/true"]\n',
        "sinks[0].comand: unknown key",
        id="command_sink_required_key_typo",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "command"\ncommand = ["/bin/true"]\nretry_mx = "2h"\n',
        "sinks[0].retry_mx: unknown key",
        id="command_sink_optional_key_typo",
    ),
    pytest.param(
        "",
        CCV
        + (
            "[[sinks]]\n"
            'type = "webhook"\n'
            'path = "e.jsonl"\n'
            'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
        ),
        "sinks[0].path: not a key of a webhook sink",
        id="a_jsonl_key_in_a_webhook_sink",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "jsonl"\npath = "e.jsonl"\nurl = "https://hook.example/"\n',
        "sinks[0].url: not a key of a jsonl sink",
        id="a_webhook_key_in_a_jsonl_sink",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "command"\ncommand = ["/bin/true"]\nsecret_file = "s.txt"\n',
        "sinks[0].secret_file: not a key of a command sink",
        id="a_secret_file_in_a_command_sink",
    ),
    pytest.param(
        "",
        CCV
        + (
            "[[sinks]]\n"
            'type = "jsonl"\n'
            'path = "e.jsonl"\n'
            'command = ["/bin/true"]\n'
            "[[sinks]]\n"
            'type = "slack"\n'
        ),
        "sinks[0].command: not a key of a jsonl sink",
        id="a_sinks_foreign_key_beats_a_later_sinks_type",
    ),
    pytest.param(
        "",
        CCV + '[[sinks]]\ntype = "log"\nurl = "https://hook.example/"\n[[sinks]]\ntype = "log"\n',
        "sinks[0].url: not a key of a log sink",
        id="a_sinks_foreign_key_beats_a_second_log_sink",
    ),
]


@pytest.mark.parametrize(("store", "body", "problem"), CASES)
async def test_check_names_the_misspelt_key(
    tmp_path: Path, store: str, body: str, problem: str
) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "reconciler.db"}"\n{store}{body}', "utf-8")
    # No secret in the environment: a misspelt secret key must not be met by one from there.
    env = {k: v for k, v in cli_env().items() if not k.startswith("RECONCILER_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    result = await call_cli("--config", cfg, "check", env=env)
    assert (result.code, result.stderr) == (78, f"config error: {cfg}: {problem}\n")
