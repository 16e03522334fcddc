"""A CCV submit body made ready to forward: reconciler's signed notification URL for its
external reference (one is generated when absent) and `notifyOnStatus` set, every field it
relies on checked. A body it refuses names the field at fault, before anything is recorded."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.config import ReceiverConfig
from reconciler.model import known_statuses, reference_problem
from reconciler.notify import notification_url

from ..key_fold import fold


class BadSubmission(Exception):
    """A submit body reconciler refuses to forward; names the JSON field."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Prepared:
    """A submit body ready to forward, and the external reference it carries."""

    body: dict[str, Any]
    reference: str


def new_reference() -> str:
    """Return a fresh external reference for a submission that has none."""
    return f"rc-{uuid.uuid4().hex}"


def prepare(
    body: dict[str, object],
    *,
    receiver: ReceiverConfig,
    account: str,
    make_reference: Callable[[], str] = new_reference,
) -> Prepared:
    """Return the body to send to CCV (a JSON object: the API's `json_body`, `ccv submit`'s
    file read), with reconciler's notification URL; raise BadSubmission."""
    if not isinstance(body.get("notifyCustomerByEmail"), bool):
        raise BadSubmission("notifyCustomerByEmail", "required, a boolean")
    if not isinstance(body.get("order"), dict):
        raise BadSubmission("order", "required, an object (made with the order configurator)")
    _no_case_twins(body, "", ("externalReference", "statusNotificationInformation"))
    reference = body.get("externalReference")
    if reference is None:
        reference = make_reference()
    elif not isinstance(reference, str):
        raise BadSubmission("externalReference", "must be a string")
    elif problem := reference_problem(reference):
        raise BadSubmission("externalReference", problem)
    info = body.get("statusNotificationInformation")
    if info is None:
        info = {}
    elif not isinstance(info, dict):
        raise BadSubmission("statusNotificationInformation", "must be an object")
    where = "statusNotificationInformation."
    _no_case_twins(info, where, ("notificationUrl", "notifyOnStatus"))
    if info.get("notificationUrl") is not None:
        raise BadSubmission(
            "statusNotificationInformation.notificationUrl",
            "reconciler sets the notification URL itself; CCV would notify someone else",
        )
    statuses = info.get("notifyOnStatus")
    if statuses is None:
        statuses = known_statuses("ccv")
    else:
        _check_statuses(statuses)
    url = notification_url(receiver, account, reference=reference)
    info = {**info, "notificationUrl": url, "notifyOnStatus": list(statuses)}
    return Prepared(
        {**body, "externalReference": reference, "statusNotificationInformation": info}, reference
    )


def _no_case_twins(document: dict[str, Any], where: str, names: tuple[str, ...]) -> None:
    """Refuse a key that differs only in case from one reconciler sets or reads: CCV's JSON
    reader may ignore case and take the caller's (another notification URL, another
    reference) instead of reconciler's."""
    folded = {fold(name): name for name in names}
    for key in document:
        name = folded.get(fold(key))
        if name is not None and name != key:
            raise BadSubmission(
                f"{where}{key}",
                f"differs from {name} only in case; CCV may take either, so it is refused",
            )


def _check_statuses(statuses: object) -> None:
    where = "statusNotificationInformation.notifyOnStatus"
    if not isinstance(statuses, list) or not statuses:
        raise BadSubmission(where, "must be a non-empty array of CCV statuses")
    known = known_statuses("ccv")
    for i, status in enumerate(statuses):
        if status not in known:
            raise BadSubmission(f"{where}[{i}]", f"not a CCV status (one of {', '.join(known)})")
