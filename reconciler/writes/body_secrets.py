"""A CCV body holding a secret of the config is refused before anything is recorded or sent.

CCV is sent no secret but its API key, and that in the Authorization header, never in a body:
a submit's or a pricing body's `orderNotes` holding the CCNow password (pasted from the wrong
field, or a template filled from the environment) went to CCV as it was. The search is the one
a CCNow action's notes and key are refused by (`redact.holds_secret` over `given_secrets`: a
secret of eight characters or more, in any case and form, or a start of one), over every JSON
string of the body, keys included, as decoded (its escapes read).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..redact import SecretForms, holds_secret
from .pricing_values import Problem
from .submit_body import BadSubmission

# What a body that holds a secret is told, after where (not the value: it holds the secret),
# in the words of a CCNow action's refusal (`redact.GIVEN_SECRET`).
SENT_SECRET = (
    "holds a secret of this config (an API key, a password, a token): it would be sent to "
    "CCV; nothing was recorded or sent"
)


def secret_at(body: object, forms: SecretForms | None, at: str = "$") -> str | None:
    """Return the JSON path of the first string of `body` (at path `at`) that holds a secret of
    `forms`, depth first in the body's order, or None. A key holding one is named by the path
    of its object and ` (a key)`: the path is built of keys found to hold none."""
    # One search over all its strings first (apart, by a character no secret holds): a body
    # of many thousand strings costs one scan in C, not one search each; only one holding a
    # secret is walked again for where. The joined search may say yes where no string alone
    # would (a start of one cut short at the end of a string that is not the last): the walk
    # decides, and such a body is passed.
    if forms is None or not holds_secret("\x00".join(_strings(body)), forms):
        return None
    where = _where(body, forms, at)
    # Keys that each hold none may spell one once joined by dots (`ab12` and `cd34ef` under a
    # secret `ab12.cd34ef`): the path is printed and passed back, so it names no key then.
    return where if where is None or not holds_secret(where, forms) else f"{at} (a key's path)"


def _where(body: object, forms: SecretForms, at: str) -> str | None:
    """`secret_at`'s walk: the path of the first string holding a secret, depth first."""
    stack: list[tuple[object, str]] = [(body, at)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if holds_secret(node, forms):
                return where
        elif isinstance(node, Mapping):
            if any(holds_secret(str(key), forms) for key in node):
                return f"{where} (a key)"
            stack.extend(reversed([(v, f"{where}.{k}") for k, v in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([(v, f"{where}[{i}]") for i, v in enumerate(node)]))
    return None


def secret_problems(body: object, forms: SecretForms | None) -> list[Problem]:
    """The problem of a pricing body holding a secret of `forms` (blocking, naming where), as
    the first of its problems: a pricing check's refusal lists them all."""
    where = secret_at(body, forms)
    return [] if where is None else [Problem(where, SENT_SECRET)]


def refuse_secrets(body: object, forms: SecretForms | None) -> None:
    """Refuse (BadSubmission: 65, the API's 422) a body holding a secret of `forms`, naming
    where (`secret_at`)."""
    where = secret_at(body, forms)
    if where is not None:
        raise BadSubmission(where, SENT_SECRET)


def _strings(body: object) -> list[str]:
    """Every string of a JSON document, its keys included."""
    found: list[str] = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, Mapping):
            found.extend(map(str, node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
