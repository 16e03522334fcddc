"""A CCV order followed under one reference is not moved to another by tracking it again: the
check is made in the transaction that tracks, over any number of orders, on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.store import Store, references

IDS = [f"5a6b7c8d-0000-4000-8000-{n:012d}" for n in range(1200)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "r.db")
    try:
        yield store
    finally:
        await store.close()


async def followed(store: Store) -> dict[str, str | None]:
    return {s.key.order_id: s.external_reference for s in await store.orders.snapshot()}


async def test_an_order_followed_elsewhere_among_many_refuses_them_all(store: Store) -> None:
    await references.track(store, "default", [(IDS[1100], "R-1")], 1.0)
    given = [(oid, f"N-{n}") for n, oid in enumerate(IDS)]
    with pytest.raises(references.FollowedElsewhere) as refused:
        await references.track(store, "default", given, 2.0)
    assert refused.value.moved == [(OrderKey("ccv", "default", IDS[1100]), "R-1", "N-1100")]
    assert await followed(store) == {IDS[1100]: "R-1"}  # nothing tracked


async def test_the_same_reference_again_or_none_moves_nothing(store: Store) -> None:
    await references.track(store, "default", [(IDS[0], "R-1"), (IDS[1], None)], 1.0)
    _, moved, _ = await references.track(
        store, "default", [(IDS[0], "R-1"), (IDS[0], None), (IDS[1], "R-2")], 2.0
    )
    assert moved == []
    assert await followed(store) == {IDS[0]: "R-1", IDS[1]: "R-2"}


async def test_relinked_the_old_reference_stays_an_alias(store: Store) -> None:
    await references.track(store, "default", [(IDS[0], "R-1")], 1.0)
    _, moved, _ = await references.track(store, "default", [(IDS[0], "R-2")], 2.0, relink=True)
    assert moved == [(OrderKey("ccv", "default", IDS[0]), "R-1", "R-2")]
    assert await followed(store) == {IDS[0]: "R-2"}
    assert [s.key.order_id for s in await store.orders.by_reference("R-1")] == [IDS[0]]
