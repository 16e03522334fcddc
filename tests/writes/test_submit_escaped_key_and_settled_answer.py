"""Review 29b: a key in a `Location` escaped where it needs no escape is never logged in clear
(decoded, it was the order id a warning names); and a submit's answer says where the submission
stands as read with the rest of what it advises, also when a notification settles it between
its close and that read. A real Submitter on a real SQLite file against a fake CCV over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from reconciler.config.secret import Secret
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store.notified import notified
from reconciler.writes.submit import Submitter
from reconciler.writes.submit_outcome import Result
from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply, ccv_config
from tests.writes.test_submit_handoffs import RECEIVER

ORDER = "5d0e7c1a-2b3f-4a6d-9e8c-7f1a2b3c4d5e"


@contextlib.asynccontextmanager
async def submitter(
    db: Path, fake: FakeCCVWrites, key: str, on_commit: Callable[[], None] = lambda: None
) -> AsyncIterator[Submitter]:
    """A Submitter on the store at `db`, its CCV account's key `key` (as `fake` expects)."""
    store = await Store.open(db)
    try:
        async with aiohttp.ClientSession() as session:
            accounts = [ccv_config(fake.base_url, api_key=Secret(key))]
            yield Submitter(
                store,
                session,
                accounts=accounts,
                receiver=RECEIVER,
                gates=Gates(),
                on_commit=on_commit,
            )
    finally:
        await store.close()


# --- 2. a key escaped in a Location ------------------------------------------------------------

# A key with signs in it, as an API key may be (base64's `+`, `=`): yarl keeps `%3D` and `+`
# in a query, so `Z%3Dk+7!...` reaches the masking as it came, a form of the key it does not
# know; read as a query field it is the key (or, `+` read as a space, nearly).
KEYS = ["Zk=7!pL9xQ-4mW2", "Z=k+7!pL9xQ4mW2"]


@pytest.mark.parametrize("key", KEYS)
async def test_a_key_needlessly_escaped_in_a_location_is_never_logged(
    tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    escaped = key.replace("=", "%3D", 1)
    location = f"/orders/view?orderId={escaped}"
    async with FakeCCVWrites(api_key=key) as fake:
        fake.submit_replies = [
            Reply(201, json.dumps({"orderId": ORDER}), "application/json", {"Location": location})
        ]
        async with submitter(tmp_path / "r.db", fake, key) as sub:
            result = await sub.submit("default", submit_body(externalReference="LOC-K"))
    assert (result.status, result.state, result.order_id) == (201, "succeeded", ORDER)
    lines = [r for r in caplog.records if r.getMessage() == "ccv.submit_location_differs"]
    assert [r.fields["location_order_id"] for r in lines] == ["***"]  # type: ignore[attr-defined]
    for record in caplog.records:
        said = f"{record.getMessage()} {getattr(record, 'fields', '')}"
        assert key not in said and key.replace("+", " ") not in said, said


# --- 3. settled between the submit's close and its answer -------------------------------------


def notified_now(db: Path, reference: str) -> Callable[[], None]:
    """An `on_commit` that, the first time it is told of a commit, has CCV's notification for
    `reference` settle it (through a second connection to the database, as the receiver's
    would, in its own thread), before the Submitter goes on."""
    done: list[object] = []

    async def notify() -> None:
        store = await Store.open(db)
        try:
            done.append(
                await notified(store, "default", reference, None, time.time(), remember=False)
            )
        finally:
            await store.close()

    def on_commit() -> None:
        if not done:
            thread = threading.Thread(target=asyncio.run, args=(notify(),))
            thread.start()
            thread.join()
            assert done, "the notification did not run"

    return on_commit


async def settled_meanwhile(tmp_path: Path, reply: Reply) -> Result:
    db = tmp_path / "r.db"
    async with FakeCCVWrites() as fake:
        fake.submit_replies = [reply]
        async with submitter(db, fake, "t_fake-ccv-key-3f9a1c", notified_now(db, "SET-1")) as sub:
            return await sub.submit("default", submit_body(externalReference="SET-1"))


async def test_a_5xx_settled_before_its_answer_is_said_resolved(tmp_path: Path) -> None:
    result = await settled_meanwhile(tmp_path, json_reply(503, {"error": "busy"}))
    assert result.status == 503
    # The state header and the advice agree: resolved, no `--not-sent`.
    assert result.state == "resolved"
    assert result.not_sent_refused is not None and "is resolved" in result.not_sent_refused


async def test_a_lost_answer_settled_before_its_answer_is_said_resolved(tmp_path: Path) -> None:
    result = await settled_meanwhile(tmp_path, Reply(DROP))
    assert (result.status, result.state) == (502, "resolved")
    document = json.loads(result.body)
    assert document["state"] == "resolved"
    assert "--not-sent" not in document["error"] and "CCV has the order" in document["error"]
    assert result.not_sent_refused is not None and "is resolved" in result.not_sent_refused
