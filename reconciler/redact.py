"""Secrets out of texts we keep: every encoding of each secret is masked before a text is cut.

A provider may echo what we sent it (the CCNow password travels form-encoded) in an error text,
and may cut that text itself; we cut texts too. Masking first and cutting after means no cut
can leave a piece of a secret that a later full-text search would miss.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from .config import Config, MissingSecret, Secret
from .secret_encodings import atom, encodings, lower, whole_encodings

MASK = "***"
# A text that ends with this many characters of a secret, or more, was cut inside the secret.
MIN_FRAGMENT = 3
# The same for a provider's whole answer passed on (`redact_body`): only a provider's own cut
# could end it inside a secret, and three letters end many a word ("Order created").
MIN_BODY_FRAGMENT = 8


def _cut_at(low: str, end: int) -> bool:
    """Whether a text cut a secret short at `end`: the text's end, or an ellipsis there."""
    return end == len(low) or low.startswith(_ELLIPSES, end)


# A percent escape, or its start where a text was cut: hex digits in either case.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{1,2}")
# A provider that cuts a text it quotes inside a secret may say so: "Zq9+pw&x=7%Se... refused".
_ELLIPSES = ("...", "\u2026")


@dataclasses.dataclass(frozen=True)
class SecretForms:
    """The forms of some secrets, found in a text whatever its case (a provider may quote one in
    capitals) through a lower-cased copy: whole, or a start of one cut short."""

    pattern: re.Pattern[str]  # the forms lower-cased, in a lower-cased text
    heads: re.Pattern[str] | None  # at every place, the first MIN_BODY_FRAGMENT characters
    # The lowered forms longer than MIN_BODY_FRAGMENT by their head: a head found is compared
    # with the few forms it begins, not with every form.
    by_head: dict[str, tuple[str, ...]] = dataclasses.field(compare=False)
    # At [n], the starts of n characters of the forms longer than that, as sent: a text's end
    # is looked up, at each size, once, whatever the number of secrets and their forms.
    by_size: tuple[frozenset[str], ...] = dataclasses.field(compare=False)
    # Per secret, its characters each as itself or percent-encoded, in any mix (`_mixed`); and
    # whether a secret has a space (a `+` in a text may be one).
    mixed: tuple[re.Pattern[str], ...] = dataclasses.field(default=(), compare=False)
    spaced: bool = dataclasses.field(default=False, compare=False)

    def find(self, text: str, fewest_at_end: int = MIN_BODY_FRAGMENT) -> list[tuple[int, int]]:
        """Return where secrets stand in `text`, in order and apart, to be masked: whole forms,
        and starts of MIN_BODY_FRAGMENT characters or more wherever they stand when they hold
        a digit or a sign other than those that join words (`-_. `), or whatever they hold when
        cut short at the text's end or before an ellipsis (a start of a mix of escaped and
        plain characters there: of `fewest_at_end` characters or more)."""
        low = lower(text)
        if len(low) != len(text):  # a letter lower() makes two that Unicode adds one day
            return [(0, len(text))]  # places would not agree: the whole text is masked
        found = [m.span() for m in self.pattern.finditer(low)] + self._cuts(text, low, True)
        return _apart(found + self._mixes(low, fewest_at_end))

    def holds(self, text: str) -> bool:
        """Whether `text` holds a secret: whole, or a start of one that holds a digit or a sign
        other than `-_. ` (not one cut short at the end: a status word is not taken for a
        password that begins with it)."""
        low = lower(text)
        return (
            self.pattern.search(low) is not None
            or bool(self._cuts(text, low, False))
            or bool(self._mixes(low, None))
        )

    def _mixes(self, low: str, fewest_at_end: int | None) -> list[tuple[int, int]]:
        """The secrets in `low` with some characters percent-encoded and others not: whole, or a
        start of MIN_BODY_FRAGMENT characters or more, or with `fewest_at_end` one of that many
        cut short at the end or before an ellipsis."""
        # No escape, no mix: the common text costs two scans in C.
        if "%" not in low and not (self.spaced and "+" in low):
            return []
        found: list[tuple[int, int]] = []
        for search in self.mixed:
            at = 0
            while (match := search.search(low, at)) is not None:
                first, last = match.span()
                if match.group(1) is not None or _kept_start(low, first, last, fewest_at_end):
                    found.append((first, last))
                    at = last
                else:  # a secret may begin inside a start that is not one ("aaab" in "aaaab")
                    at = first + 1
        return found

    def _cuts(self, text: str, low: str, at_end: bool) -> list[tuple[int, int]]:
        """The starts of a secret in `text`: those that are not words, and with `at_end` those
        cut short at the text's end or before an ellipsis too."""
        found: list[tuple[int, int]] = []
        if self.heads is None:
            return found
        # One search for the heads; the rare text that holds one is looked at further.
        for head in self.heads.finditer(low):
            at = head.start()
            forms = self.by_head[low[at : at + MIN_BODY_FRAGMENT]]
            end = at + max(_shared(low, at, form) for form in forms)
            # A provider echoes what we sent and goes on ("x_password=Pw0rd-Zq9+ is wrong"):
            # a start that holds a digit or a sign is a secret's wherever it stands.
            if not _words(text[at:end]) or (at_end and _cut_at(low, end)):
                found.append((at, end))
        return found

    def cut_end(self, text: str, fewest: int) -> int:
        """Return how long a short start of a secret (`fewest` to MIN_BODY_FRAGMENT - 1
        characters, in the case it was sent) the text ends with, if any: a text we cut there."""
        tail = text[-MIN_BODY_FRAGMENT:]
        # Percent escapes are case-insensitive; ours are upper case, some servers write lower.
        tails = {tail, _PERCENT_ESCAPE.sub(lambda m: m[0].upper(), tail)}
        for size in range(min(len(tail), len(self.by_size) - 1), max(fewest, 1) - 1, -1):
            starts = self.by_size[size]
            if any(t[-size:] in starts for t in tails):
                return size
        return 0


# What joins the words of a name or a sentence ("reconciler-api", "t_SECRET", "v. 2"): a start
# of a secret holding only these and letters may be a user agent's or an id's own words.
_JOINERS = frozenset("-_. ")


def _kept_start(low: str, first: int, last: int, fewest_at_end: int | None) -> bool:
    """Whether a start of a secret at `low[first:last]`, some of it percent-encoded, is masked:
    of MIN_BODY_FRAGMENT characters or more, or with `fewest_at_end` that many cut short."""
    piece = low[first:last]
    if "%" not in piece and "+" not in piece:
        return False  # as sent or lower-cased: the forms' own (`_cuts`, `cut_end`)
    if last - first >= MIN_BODY_FRAGMENT:
        return True
    return fewest_at_end is not None and last - first >= fewest_at_end and _cut_at(low, last)


def _words(span: str) -> bool:
    """Whether `span` is letters and the signs that join words alone: no digit, no other sign."""
    return all(c.isalpha() or c in _JOINERS for c in span)


def _shared(text: str, at: int, form: str) -> int:
    """How many characters of `form` `text` has from `at` on."""
    # Halving with startswith: a head repeated through a large answer costs a few C calls each.
    low, high = 0, min(len(form), len(text) - at)
    while low < high:
        middle = (low + high + 1) // 2
        if text.startswith(form[:middle], at):
            low = middle
        else:
            high = middle - 1
    return low


def _apart(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans in order and apart, those that overlap made one: a start of a secret found
    inside a longer one masks to the end of either."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if out and first < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


class Secrets(tuple[str, ...]):
    """Secrets held for a while (the config's, an account's with them), which keep each search
    made of them (`_search`): built once, when first asked; one costs milliseconds (every
    encoding of every secret, compiled), and a CCNow answer, an API request or a failed pass
    asks for one."""

    _searches: dict[frozenset[str], SecretForms | None]
    _answers: dict[str, Secrets]  # answer_secrets made of them, by the account's own secret

    def __new__(cls, secrets: Iterable[str] = ()) -> Secrets:
        self = super().__new__(cls, secrets)
        self._searches = {}
        self._answers = {}
        return self


def held(secrets: Iterable[str]) -> Secrets:
    """`secrets` as Secrets (themselves when they are: what they keep is kept)."""
    return secrets if isinstance(secrets, Secrets) else Secrets(secrets)


def _search(of: Iterable[str], secrets: frozenset[str]) -> SecretForms | None:
    """The search for `secrets`, made of `of` (some or all of them, or their forms): kept on
    `of` when they are Secrets, else made for this call. The one place a search is made."""
    if not isinstance(of, Secrets):
        return secret_forms(secrets)
    if secrets not in of._searches:
        of._searches[secrets] = secret_forms(secrets)
    return of._searches[secrets]


def secret_forms(secrets: frozenset[str]) -> SecretForms | None:
    """Return the forms of `secrets` as one search, or None when there are none (`_search`
    keeps it where the secrets are held)."""
    forms = {form for secret in secrets for form in encodings(secret)}
    if not forms:
        return None
    lowered = {lower(form) for form in forms}
    whole = {form for secret in secrets for form in whole_encodings(secret)}
    # Longest first, so that a form is never masked only in part by a shorter one.
    alternatives = "|".join(map(re.escape, sorted(lowered | whole, key=lambda f: (-len(f), f))))
    heads = {form[:MIN_BODY_FRAGMENT] for form in lowered if len(form) > MIN_BODY_FRAGMENT}
    # A lookahead: a head that begins inside another one ("aaaaaaaaaX" in "aaaaaaaaaaaX") is
    # found too.
    head_search = "(?=" + "|".join(map(re.escape, sorted(heads))) + ")"
    by_head = {head: tuple(form for form in lowered if form.startswith(head)) for head in heads}
    by_size = tuple(
        frozenset(form[:size] for form in forms if len(form) > size)
        for size in range(MIN_BODY_FRAGMENT + 1)
    )
    return SecretForms(
        re.compile(alternatives),
        re.compile(head_search) if heads else None,
        by_head,
        by_size,
        tuple(re.compile(_mixed(secret)) for secret in sorted(secrets) if secret),
        any(" " in secret for secret in secrets),
    )


def _mixed(secret: str) -> str:
    """A search, in a lower-cased text, for `secret` with any of its characters percent-encoded
    and the others not (`Zk%3D7!pL9` for `Zk=7!pL9`; hex digits of either case; `+` for a
    space): what some encoders do, that no list of forms can cover. It finds the secret or a
    start of it of MIN_FRAGMENT characters or more (and a percent escape cut short where the
    text ends); group 1 is set when the secret is whole."""
    atoms = [atom(c) for c in secret]
    least = min(len(atoms), MIN_FRAGMENT)
    rest = "()"
    for piece in reversed(atoms[least:]):
        rest = f"(?:{piece}{rest})?"
    # A UTF-8 character has at most four bytes: three whole escapes before the cut one. Not `*`:
    # that looked to the end of every run of escapes at every match (100 KB of them: 40 s).
    cut = r"(?:(?:%[0-9a-f]{2}){0,3}%[0-9a-f]?(?=\Z|\.\.\.|\u2026))?"
    return "".join(atoms[:least]) + rest + cut


# What an order id or reference given to reconciler that holds a secret is told (not the value:
# it holds the secret).
GIVEN_SECRET = (
    "holds a secret of this config (an API key, a password, a token): it would be kept in the "
    "database, the events and the log; nothing was done"
)


# A secret shorter than this is not looked for in an order id or a reference given: a
# password of `42` or `shop` would refuse every id that has those letters.
GIVEN_SECRET_MIN = 8


def answer_secrets(own: str, config: Iterable[str]) -> Secrets:
    """The secrets a word a provider answered (an order id, a status word) must not hold to be
    kept: the account's own, and the config's others as a value given is checked for (of
    GIVEN_SECRET_MIN characters or more). A provider may echo any of them. Made once of the
    config's Secrets (kept there by `own`), so each search of them is made once too, whichever
    client or post asks."""
    if isinstance(config, Secrets) and own in config._answers:
        return config._answers[own]
    made = Secrets(dict.fromkeys([own, *(s for s in config if len(s) >= GIVEN_SECRET_MIN)]))
    if isinstance(config, Secrets):
        config._answers[own] = made
        # A search is of a set of secrets, whoever holds them: the config's and an account's
        # (the same set when all are long) share the ones made.
        made._searches = config._searches
    return made


def answer_forms(own: str, config: Iterable[str]) -> SecretForms | None:
    """The secrets a provider's answer must not hold to be kept (answer_secrets: the account's
    own and the config's others), as one search: a CCV status answer's and a submit's."""
    return _search(config, frozenset(answer_secrets(own, config)))


def given_secrets(secrets: Iterable[str]) -> SecretForms | None:
    """The secrets an order id, reference or key given to reconciler must not hold, as one
    search: those of GIVEN_SECRET_MIN characters or more."""
    return _search(secrets, frozenset(s for s in secrets if len(s) >= GIVEN_SECRET_MIN))


def holds_secret(text: str, forms: SecretForms | None) -> bool:
    """Whether `text` holds a secret in any of its forms and cases, whole or a start of one
    (eight characters or more holding a digit or a sign other than `-_. `): a status word or a
    reference that echoes one is kept nowhere."""
    return forms is not None and forms.holds(text)


def _masked(text: str, forms: SecretForms, fewest_at_end: int) -> str:
    """Return `text` with the secrets found in it masked, and a start of one of `fewest_at_end`
    characters or more at its end."""
    pieces: list[str] = []
    start = 0
    for first, last in forms.find(text, fewest_at_end):
        pieces += [text[start:first], MASK]
        start = last
    rest = text[start:]
    cut = forms.cut_end(rest, fewest_at_end) if fewest_at_end < MIN_BODY_FRAGMENT else 0
    pieces.append(rest[: len(rest) - cut] + MASK if cut else rest)
    return "".join(pieces)


def text_forms(secrets: Iterable[str]) -> SecretForms | None:
    """The forms of `secrets` that `redact` masks, as one search: built once for the many
    texts of one answer (`mask`)."""
    return _search(secrets, frozenset(s for s in secrets if s))


def squeezed_forms(secrets: Iterable[str]) -> SecretForms | None:
    """`text_forms` of `secrets` with their blanks left out: a secret that a line break split,
    looked for once the text's blanks are run together (the same search as text_forms' when
    no secret holds a blank)."""
    squeezed = ("".join(secret.split()) for secret in secrets)
    return _search(secrets, frozenset(s for s in squeezed if s))


def redact(text: str, secrets: Iterable[str], *, limit: int | None = None) -> str:
    """Return `text` with every encoding of every secret masked, then cut to `limit` chars."""
    return mask(text, text_forms(secrets), limit=limit)


def mask(
    text: str, forms: SecretForms | None, *, limit: int | None = None, at_end: int = MIN_FRAGMENT
) -> str:
    """`redact` with the secrets' forms made already (`text_forms`); a start of a secret that
    ends the text is masked from `at_end` characters on (a body's: MIN_BODY_FRAGMENT)."""
    if forms is not None:
        text = _masked(text, forms, at_end)
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return text


def redact_body(body: bytes, secrets: Iterable[str]) -> bytes:
    """Return a provider's answer with every encoding of every secret masked, for passing it on
    whole: the rest byte for byte as it came (a text that is not UTF-8, escapes in lower case)."""
    # surrogateescape: bytes that are not UTF-8 go back out as they came.
    text = body.decode("utf-8", "surrogateescape")
    masked = mask(text, text_forms(secrets), at_end=MIN_BODY_FRAGMENT)
    return body if masked == text else masked.encode("utf-8", "surrogateescape")


def config_secrets(value: object) -> Secrets:
    """Return the value of every Secret in a config tree (dataclasses, sequences, mappings); a
    whole Config's are gathered once and kept with it (`Config.kept`), shared by its holders."""
    if not isinstance(value, Config):
        return Secrets(_values(value))
    kept = value.kept.get("secrets")
    if not isinstance(kept, Secrets):
        kept = value.kept["secrets"] = Secrets(_values(value))
    return kept


def _values(value: object) -> list[str]:
    found: list[str] = []
    if isinstance(value, MissingSecret):
        pass  # not loaded: nothing of it can be in a text
    elif isinstance(value, Secret):
        found.append(value.reveal())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            # Config.kept is what is made of the config's secrets, not one of them; any other
            # field, derived or not, is searched (a derived key is a secret too).
            if not (isinstance(value, Config) and item.name == "kept"):
                found += _values(getattr(value, item.name))
    elif isinstance(value, (list, tuple, frozenset, set, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            found += _values(item)
    return found
