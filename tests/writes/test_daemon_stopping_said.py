"""A command handed to the running daemon's API in the moment its stop began (the request on a
connection the API had taken): the API refuses it `503 {"error": "stopping"}` with nothing
done, and the command says so, exit 75; a submit is not told as one whose answer did not come
(which would send its user to look for an order at CCV that was never sent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.commands.ccv_submit import _through_api
from reconciler.exits import EX_TEMPFAIL
from reconciler.redact import config_secrets
from reconciler.writes.daemon_api import post_to_api
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import serve_api

SAID = "the running daemon is stopping: nothing was sent or recorded"


async def test_commands_through_a_stopping_daemon_say_nothing_was_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv) as served:
        config = served.daemon.config
        assert config.api is not None and served.daemon.api is not None
        # The stop's first moment, its socket still open: what a connection taken before meets.
        served.daemon.api.stopping.begin()
        document = json.loads(json.dumps(submit_body(externalReference="late-1")))
        submitted = await _through_api(
            config, config.api, "default", document, config_secrets(config), wait_s=20.0
        )
        submit_err = capsys.readouterr().err
        track = {"source": "ccv", "order_id": "O-1", "external_reference": "late-1"}
        tracked = await post_to_api(config.file, config.api, "/api/v1/orders", track)
        track_err = capsys.readouterr().err
        assert served.rows("SELECT count(*) FROM submissions") == [(0,)]
        assert served.rows("SELECT count(*) FROM orders") == [(0,)]
    assert ccv.submits == []
    assert submitted == EX_TEMPFAIL and tracked == EX_TEMPFAIL
    for err in (submit_err, track_err):
        assert SAID in err, err
        assert "not known" not in err and "look at" not in err, err
