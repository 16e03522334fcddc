"""The poller: one coordinator per provider account (coordinator.py, ccv.py, ccnow.py), and the
account health rules they apply (health.py), re-exported here.

This package's top imports only the pure health rules: importing them does not import the
coordinators. The store keeps health in its own encoding (store/sources.py) and imports nothing
from here.
"""

from __future__ import annotations

from ..passes.report import PassAnswers
from .health import (
    LOST_WAVE_MIN,
    PARTS,
    Part,
    Verdict,
    health_event,
    is_lost_wave,
    needs_probe,
    needs_witness,
    next_health,
    probe_verdict,
    verdict,
)

__all__ = (
    "LOST_WAVE_MIN",
    "PARTS",
    "Part",
    "PassAnswers",
    "Verdict",
    "health_event",
    "is_lost_wave",
    "needs_probe",
    "needs_witness",
    "next_health",
    "probe_verdict",
    "verdict",
)
