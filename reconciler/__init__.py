"""reconciler: keeps an integrator's view of its CCV and CCNow orders true."""

__version__ = "0.1.0"
# What every HTTP request we make says it comes from.
USER_AGENT = f"reconciler/{__version__}"
