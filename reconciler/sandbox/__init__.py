"""A simulator of both providers: CCV order status + submit, CCNow Order Update API, with faults.

`options` holds what it is told and counts, `model` the orders and their seeded lifecycles,
`faults` the injected failures, `ccnow` the CCNow line protocol, `notifications` the outgoing
calls and `app` the HTTP server.
"""

from __future__ import annotations

from .app import CCV_STATUS_PATH, CCV_SUBMIT_PATH, Sandbox, run_sandbox
from .ccnow import CCNOW_PATH
from .faults import Fault, FaultKind, parse_faults
from .model import CCNOW_LIFECYCLE, CCV_LIFECYCLE, LIFECYCLES, Lifecycle
from .options import History, SandboxOptions, SandboxStats, check_notification_url

__all__ = (
    "CCNOW_LIFECYCLE",
    "CCNOW_PATH",
    "CCV_LIFECYCLE",
    "CCV_STATUS_PATH",
    "CCV_SUBMIT_PATH",
    "LIFECYCLES",
    "Fault",
    "FaultKind",
    "History",
    "Lifecycle",
    "Sandbox",
    "SandboxOptions",
    "SandboxStats",
    "check_notification_url",
    "parse_faults",
    "run_sandbox",
)
