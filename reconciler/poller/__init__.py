"""The poller: one coordinator per provider account (coordinator.py, ccv.py, ccnow.py), and the
account health rules they apply (health.py), re-exported here for the store and the reports.

This package's top imports only the pure health rules, so that the store and the pass report can
use them without importing the coordinators (which import both).
"""

from __future__ import annotations

from .health import (
    LOST_WAVE_MIN,
    PARTS,
    Part,
    PassAnswers,
    Verdict,
    health_event,
    is_lost_wave,
    mask_parts,
    needs_probe,
    next_health,
    parts_mask,
    verdict,
)

__all__ = [
    "LOST_WAVE_MIN",
    "PARTS",
    "Part",
    "PassAnswers",
    "Verdict",
    "health_event",
    "is_lost_wave",
    "mask_parts",
    "needs_probe",
    "next_health",
    "parts_mask",
    "verdict",
]
