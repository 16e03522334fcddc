"""Secret files: a regular file of at most 64 KiB, whatever names it (a `*_file` key or a
systemd credential); an error names the path it tried."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config
from tests.conftest import REPO, call_cli, cli_env, run_cli

CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\n"
CCV = "[ccv]\nbase_url = 'https://ccv.example'\n"


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "reconciler.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def _at_most_2_gib() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_device_is_no_secret_file(tmp_path: Path) -> None:
    # /dev/zero was read until memory ran out: a MemoryError traceback (bounded here, so that
    # a return of the fault does not take the test machine's memory with it).
    cfg = config_file(tmp_path, CCNOW + "password_file = '/dev/zero'\n")
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(cfg), "check"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        preexec_fn=_at_most_2_gib,
        check=False,
    )
    assert result.returncode == 78, result.stderr
    assert result.stderr == (
        f"config error: {cfg}: ccnow.password_file: /dev/zero is not a regular file\n"
    )


def test_a_link_is_judged_by_what_it_points_to(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "link").symlink_to("/dev/null")
    cfg = config_file(tmp_path, CCNOW + "password_file = 'link'\n")
    assert load_error(cfg).problem == f"{tmp_path / 'etc' / 'link'} is not a regular file"
    (tmp_path / "password").write_text("pw-0123\n", encoding="utf-8")
    (tmp_path / "etc" / "link").unlink()
    (tmp_path / "etc" / "link").symlink_to(tmp_path / "password")
    (ccnow,) = load_config(cfg).ccnow
    assert ccnow.password.reveal() == "pw-0123"


def test_a_secret_file_of_more_than_64_kib_is_refused(tmp_path: Path) -> None:
    # A 67 MB file was taken as a password.
    secret = tmp_path / "etc" / "password"
    cfg = config_file(tmp_path, CCNOW + "password_file = 'password'\n")
    secret.write_text("p" * 64 * 1024, encoding="utf-8")
    (ccnow,) = load_config(cfg).ccnow
    assert len(ccnow.password.reveal()) == 64 * 1024
    secret.write_text("p" * (64 * 1024 + 1), encoding="utf-8")
    error = load_error(cfg)
    assert (error.key, error.problem) == ("ccnow.password_file", f"{secret} is larger than 64 KiB")


def test_a_credential_that_is_no_regular_file_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ccnow-password").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    error = load_error(config_file(tmp_path, CCNOW))
    assert (error.key, error.problem) == (
        "ccnow.password",
        f"{credentials / 'ccnow-password'} is not a regular file (from credential ccnow-password)",
    )


@pytest.mark.parametrize("command", ["check", "status"])
async def test_a_fifo_as_secret_file_is_a_config_error_not_a_hang(
    tmp_path: Path, command: str
) -> None:
    # `check` and `status` waited for a writer that never came.
    cfg = config_file(tmp_path, CCNOW + "password_file = 'password'\n")
    os.mkfifo(tmp_path / "etc" / "password")
    # A process: were it to hang on the FIFO, it is killed; a thread here could not be.
    result = await run_cli("--config", cfg, command, timeout_s=30)
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: ccnow.password_file: "
        f"{tmp_path / 'etc' / 'password'} is not a regular file"
    )


def test_an_unreadable_secret_file_is_named_by_the_path_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `~` is not expanded (paths are beside the config file): the error says where it looked.
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config_file(tmp_path, CCNOW + "password_file = '~/ccnow.pw'\n")
    error = load_error(cfg)
    assert (error.key, error.problem) == (
        "ccnow.password_file",
        f"cannot read {tmp_path / 'etc' / '~' / 'ccnow.pw'}: No such file or directory",
    )


async def test_check_names_the_path_of_a_missing_secret_file(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, CCNOW + "password_file = '../secrets/pw'\n")
    (tmp_path / "secrets").mkdir()
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: ccnow.password_file: cannot read "
        f"{tmp_path / 'etc' / '..' / 'secrets' / 'pw'}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("text", "env", "given"),
    [
        # The password itself where the path of its file goes: signs no file name holds.
        (CCNOW + "password_file = '{given}'\n", {}, "Pw0rd-Zq9+&x=7%Se"),
        # A `/` is no path's mark: base64 keys and webhook secrets hold it.
        (CCNOW + "password_file = '{given}'\n", {}, "Pw0rd+Zq9/x=7Se"),
        (CCNOW + "password_file = '{given}'\n", {}, "whsec_c2VjcmV0/a2V5+Zm9v"),
        # Base64 starts with `/` too: a path only in a directory that exists, not the root.
        (CCNOW + "password_file = '{given}'\n", {}, "/Zq9+x=7SePw0rd"),
        (CCNOW + "password_file = '{given}'\n", {}, "/Zq9+x/7SePw0rd="),
        (CCNOW + "password_file = '{given}'\n", {}, "./Zq9+x/7SePw0rd="),
        (CCNOW + "password_file = '{given}'\n", {}, "~/Zq9+x/7SePw0rd="),
        # A key: a long bare name of letters and digits, no extension.
        (
            CCNOW + "password = 'pw-0123'\n" + CCV + "api_key_file = '{given}'\n",
            {},
            "t_fake-ccv-key-3f9a1c",
        ),
        # Another secret of the config, from the environment or given inline.
        (
            CCNOW + "password_file = '{given}'\n",
            {"RECONCILER_CCV_API_KEY": "plain-key"},
            "plain-key",
        ),
        (
            CCNOW + "password_file = '{given}'\n[api]\ntoken = 'plain-api-token-name'\n",
            {},
            "plain-api-token-name",
        ),
    ],
    ids=[
        "signs",
        "base64-slash",
        "whsec-slash",
        "base64-at-root",
        "base64-no-dir",
        "base64-dot-no-dir",
        "base64-home-no-dir",
        "key-like",
        "env-secret",
        "inline-secret",
    ],
)
async def test_a_secret_given_as_its_file_path_is_not_echoed(
    tmp_path: Path, text: str, env: dict[str, str], given: str
) -> None:
    # `cannot read /etc/reconciler/Pw0rd-Zq9+&x=7%Se: No such file or directory` printed it,
    # and `cannot read /Zq9+x=7SePw0rd: ...` a base64 key that starts with `/`.
    cfg = config_file(tmp_path, text.replace("{given}", given))
    env = {**cli_env(), "HOME": str(tmp_path), **env}
    result = await call_cli("--config", cfg, "check", env=env)
    assert result.code == 78, result.stderr
    key = "ccv.api_key_file" if "api_key_file" in text else "ccnow.password_file"
    assert result.stderr.strip() == (
        f"config error: {cfg}: {key}: no such file (the value given is not shown: it looks "
        f"like the secret itself; give {key.split('.')[1].removesuffix('_file')}, or the path of "
        "a file that holds it)"
    )
    assert given not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "given",
    [
        "ccnow-password",
        "secrets/ccnow_pw.txt",
        "{tmp}/keys/pw",
        # A template unit's credentials, a path with signs a bare secret would hold.
        "{tmp}/credentials/reconciler@shop.service/ccnow-password",
        "./keys/shop+eu:2/whsec_file",
        "../keys/Zq9+x=7SePw0rd",
        "~/keys/shop+eu.pw",
    ],
)
def test_an_ordinary_path_of_a_missing_secret_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # A path that starts as one does is named when its directory exists (`~` as the user's).
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    given = given.replace("{tmp}", str(tmp_path))
    cfg = config_file(tmp_path, CCNOW + f"password_file = '{given}'\n")
    (cfg.parent / Path(given).expanduser()).parent.mkdir(parents=True, exist_ok=True)
    error = load_error(cfg)
    assert (error.key, error.problem) == (
        "ccnow.password_file",
        f"cannot read {tmp_path / 'etc' / given}: No such file or directory",
    )
