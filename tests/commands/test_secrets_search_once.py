"""The config's secrets are gathered once per loaded config, and every holder in the process
(delivery, coordinators, CCNow actions, submits, the API, command sinks) shares them, with each
search made of them: a search costs milliseconds, and `run` made the same one six times."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

from reconciler import cli, redact
from reconciler.config import Config, load_config
from reconciler.redact import answer_secrets, config_secrets, squeezed_forms, text_forms
from tests.conftest import cli_env, environ, write_config
from tests.fake_providers import FakeCCNow, FakeCCV


async def test_a_catch_up_gathers_the_configs_secrets_once(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    args = cli.parse_args(["--config", str(cfg), "catch-up"])
    gathered: list[object] = []
    searched: list[frozenset[str]] = []

    # Seen, not patched: a profile hook on this thread, where the command runs (config_command
    # in this loop), noting each walk of a Config for its secrets and each search made.
    def seen(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        if frame.f_code is redact._values.__code__ and isinstance(frame.f_locals["value"], Config):
            gathered.append(frame.f_locals["value"])
        elif frame.f_code is redact.secret_forms.__code__:
            searched.append(frame.f_locals["secrets"])

    before = sys.getprofile()
    with environ(cli_env()):
        sys.setprofile(seen)
        try:
            code = await cli.config_command(args)
        finally:
            sys.setprofile(before)
    assert code == 0
    assert len(gathered) == 1
    assert len(searched) == len(set(searched))  # no search made twice


async def test_a_configs_secrets_and_their_searches_are_kept_with_it(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    with environ(cli_env()):
        config = load_config(write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow))
    secrets = config_secrets(config)
    assert config_secrets(config) is secrets
    assert text_forms(config_secrets(config)) is text_forms(secrets) is not None
    # An account's answer secrets, made of the config's, are made once too, and so are the
    # forms of the secrets with their blanks left out.
    own = config.ccnow[0].password.reveal()
    answers = answer_secrets(own, secrets)
    assert answer_secrets(own, config_secrets(config)) is answers
    assert text_forms(answers) is text_forms(secrets)  # one set of secrets: one search
    assert squeezed_forms(secrets) is squeezed_forms(secrets) is text_forms(secrets)
    # A config made from it (`replace`) may hold other secrets: it gathers its own.
    other = replace(config, ccv=())
    assert config_secrets(other) is not secrets
    assert config_secrets(other) == tuple(s for s in secrets if s in config_secrets(other))
