"""A store whose file is deleted (or replaced) under a running daemon: the daemon would go on
committing into a file no path names, and a `catch-up` would make a fresh store beside it.
It is the store failing, kind `gone`: one `store.failing` line, /healthz 503."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from reconciler.store import Store
from tests.conftest import cli_env, daemon_here, free_port, poll_until, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_store_faults import healthz_until


async def test_a_removed_file_is_the_store_gone_until_its_path_names_it_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "reconciler.db"
    store = await Store.open(path)
    try:
        store.health.watch(on_corrupt=lambda: None)
        await store.orders.track("ccv", "default", [("o-1", None)], 1.0)
        assert not store.health.failing
        path.rename(tmp_path / "moved.db")
        with caplog.at_level(logging.INFO, logger="reconciler.store"):
            await store.orders.track("ccv", "default", [("o-2", None)], 2.0)
            await store.orders.track("ccv", "default", [("o-3", None)], 3.0)
            episode = store.health.current
            assert episode is not None and episode.kind == "gone"
            assert str(path) in episode.error
            (tmp_path / "moved.db").rename(path)  # put back: it is the open file again
            await store.orders.track("ccv", "default", [("o-4", None)], 4.0)
            assert not store.health.failing
        lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.store"]
        assert lines == ["store.failing", "store.recovered"]
    finally:
        await store.close()


async def test_the_daemon_says_its_store_is_gone_in_healthz(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    state = tmp_path / "state"
    state.mkdir()
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(state / "r.db")))
    env = cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg, env) as daemon:
        await poll_until(lambda: b'"daemon.ready"' in log.read_bytes(), 30, "daemon ready")
        shutil.rmtree(state)
        status, body = await healthz_until(port, lambda s, b: not b["store"]["healthy"])
        assert status == 503 and "gone" in body["store"]["error"]
        await daemon.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    failing = [line for line in lines if line.get("message") == "store.failing"]
    assert [(line["kind"], line["level"]) for line in failing] == [("gone", "error")]
