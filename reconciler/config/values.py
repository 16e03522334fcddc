"""Pure rules for single config values: durations, TOML type names, URLs, listen addresses."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Final
from urllib.parse import urlsplit

import yarl

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h|d)?")
_UNIT_S: Final[Mapping[str, float]] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The longest duration any setting takes: a century. Longer ones put the scheduler's next run
# past the calendar's end (year 9999) and would stop the daemon at its start.
MAX_DURATION_S = 36500 * 86400.0


def parse_duration(value: str | float) -> float:
    """Return seconds from a number of seconds or a string like "500ms", "90s", "5m", "2h", "3d"."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    # Spaces around it are read (" 10s "), no other white space: str.strip() took "5m\n", a
    # tab or a no-break space too, which README refuses in every config string.
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip(" "))):
        number, unit = float(match[1]), match[2] or "s"
        # Divide for ms so that "100ms" is exactly 0.1, not 100 * 0.001.
        seconds = number / 1000 if unit == "ms" else number * _UNIT_S[unit]
    if seconds is None:
        raise ValueError(
            f"invalid duration '{value}' (use seconds or a number with ms, s, m, h, d)"
        )
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"invalid duration '{value}' (must be finite and not negative)")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"invalid duration '{value}' (at most 36500d, a century)")
    return seconds


_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime, "datetime"),  # before date: datetime is a date subclass
    (date, "date"),
    (time, "time"),
)


def type_name(value: object) -> str:
    """Name a parsed TOML value's type the way TOML does."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)), "value")


def url_problem(url: str, *, base: bool = False) -> str | None:
    """Why `url` cannot be used to talk to a provider or be handed out, or None. A `base` URL
    gets paths appended to it, so a query or fragment would end up in front of them."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "invalid URL (whitespace or control character)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "invalid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "expected an http(s) URL with a host"
    if port == 0:
        # No request reaches port 0: `check --online` said "unavailable" (75), as if later.
        return "port 0 cannot be connected to (port 1 to 65535)"
    if problem := _host_problem(url, host):
        return problem
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs; every secret has its own key.
        return "must not contain user:password"
    if parts.scheme == "http" and not is_loopback(host):
        return "https required (plain http only for loopback hosts)"
    if base and ("?" in url or "#" in url):
        return "must not contain a query or fragment (paths are appended to it)"
    return None


def _host_problem(url: str, host: str) -> str | None:
    """Why a URL's host cannot be looked up, or None. Judged as the HTTP client sends it: yarl
    turns a name into IDNA 2008 / UTS 46 (`א1` is `xn--1-zhc`), and the resolver encodes that
    with Python's IDNA codec, which refuses an empty label or one over 63 characters (`a..b`
    passed `check` and failed every request with a traceback). Python's own IDNA 2003 codec on
    the name as written refused names the client sends."""
    try:
        sent = yarl.URL(url).raw_host or host
        sent.encode("idna")
    except UnicodeError:
        labels = host.removesuffix(".").split(".")
        if any(not 1 <= len(label) <= 63 for label in labels):
            return f"invalid host '{host}' (each dot-separated label is 1 to 63 characters)"
        return f"invalid host '{host}' (not a name IDNA can encode)"
    except ValueError:
        return "invalid URL"
    return None


def is_loopback(host: str) -> bool:
    """Return whether a URL host is this machine (where plain http is acceptable)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# `_` too, which RFC 1123 leaves out: glibc resolves such names (`my_host` in /etc/hosts).
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def is_host_name(host: str) -> bool:
    """Return whether `host` is a host name as RFC 1123 spells one, `_` allowed: dot-separated
    labels of letters, digits, `_` and inner hyphens, the last not all digits (`999.1.1.1` is
    no name)."""
    labels = host.removesuffix(".").split(".")
    return (
        len(host) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def parse_listen(value: str, *, free_port: bool = False) -> tuple[str, int] | None:
    """Split "host:port" / "[v6]:port"; None when it is neither (port 1 to 65535, or 0 too
    with `free_port`: the system picks one, as the sandbox's `--listen 127.0.0.1:0`). A host
    that is neither an IP address nor a host name, or an IPv4-mapped IPv6 address, raises
    ValueError: it could never be bound (names are not resolved here; that is left to the
    listener, as the name may only resolve where it runs)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return None
        if mapped is not None:
            # The listeners' IPv6 sockets take IPv6 alone (asyncio sets IPV6_V6ONLY): binding
            # one failed at every start (75), which systemd restarts for ever.
            raise ValueError(
                f"'{host}' is an IPv4-mapped IPv6 address, which cannot be listened on: "
                f"use the IPv4 address {mapped}"
            )
    elif ":" in host or "[" in host or "]" in host:
        return None
    elif not _is_ip(host) and not is_host_name(host):
        raise ValueError(f"'{host}' is neither an IP address nor a host name")
    number = int(port)
    return (host, number) if (0 if free_port else 1) <= number <= 65535 else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def may_be_one_address(first: str, second: str) -> bool:
    """Return whether two listen hosts may name one address: a host name (it may resolve to
    the other, and is not resolved here), a wildcard (it takes every address) or the same IP."""
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return True
    return a.is_unspecified or b.is_unspecified or a == b
