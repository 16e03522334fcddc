"""`reconciler ccv resolve --ref REF --not-sent|--made`: settle an uncertain CCV submit by a
person's word, locally or through the running daemon's API."""

from __future__ import annotations

from ..config import Config
from ..exits import EX_DATAERR, EX_OK, EX_TEMPFAIL
from ..logs import say
from ..redact import config_secrets
from ..writes.daemon_api import held_elsewhere, post_to_api
from .ccv_submit import DELIVER_TIMEOUT_S, one_line


async def resolve_command(
    config: Config, account: str, reference: str, *, made: bool = False
) -> int:
    """`ccv resolve --ref REF --not-sent`: close an uncertain submit by a person's word that
    CCV never got it (no order of the reference at CCV), locally or through the daemon;
    `--made` (`made`): that CCV made an order of it, one reconciler will not follow."""
    from ..runtime import writer_unless_held
    from ..writes.submit_advice import not_settled

    async with writer_unless_held(config) as rt:
        if rt is not None:
            settled, found = await rt.submitter().settle(
                account, reference, "made" if made else "not_sent"
            )
            await rt.delivery.drain(DELIVER_TIMEOUT_S)
            if not settled:
                say(f"reconciler: error: {not_settled(reference, found)}")
                return EX_DATAERR
    if rt is None:
        if config.api is None:
            raise held_elsewhere("nothing was settled")
        said: dict[str, object] = {"made": True} if made else {"sent": False}
        document = {"account": account, "external_reference": reference, **said}
        answer = await post_to_api(
            config.file, config.api, "/api/v1/ccv/submissions/resolve", document
        )
        if isinstance(answer, int):
            return answer
        status, body = answer
        error = body.get("error")
        if status != 200 and isinstance(error, str):
            say(f"reconciler: error: {one_line(error, config_secrets(config))}")
            return EX_DATAERR if 400 <= status < 500 else EX_TEMPFAIL
        if status != 200 or body.get("state") != ("resolved" if made else "failed"):
            # Not the daemon's answer as it gives it (another service on its port, say):
            # nothing says the word was taken.
            say(
                f"reconciler: error: the daemon's answer was not understood (HTTP {status}); "
                f"whether the submit of external reference {reference} is settled is not "
                "known: `reconciler status` or `GET /api/v1/ccv/submissions/REF` says"
            )
            return EX_TEMPFAIL
    if made:
        print(
            f"{reference} made: its submit is closed as resolved (CCV has an order of it, not "
            "followed by reconciler); the reference stays taken"
        )
    else:
        print(
            f"{reference} not sent: its submit is closed as failed; the reference may be "
            "submitted again"
        )
    return EX_OK
