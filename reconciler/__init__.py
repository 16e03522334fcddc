"""reconciler: keeps an integrator's view of its CCV and CCNow orders true."""

__version__ = "0.1.0"
