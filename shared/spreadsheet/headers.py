"""Header cells as customer tools write them, matched to customer fields.

A header is folded (accents and other scripts transliterated by unidecode, camelCase split, case,
spaces, dashes and punctuation folded), then read as `<qualifiers> <term> <qualifiers>`: the term names
a field in one of the languages below (`city`, `Ort`, `Ville`, `Ciudad`, `Plaats`, `Città`, `Cidade`),
the qualifiers say whose or which one it is (`Default Address`, `Mailing`, `Business`, `geschäftlich`,
`Person -`, `Address 1 -`, `- Work`, `2`). Words that turn a field into something about it (`Type`,
`Label`, `Opt Out`, `Yomi`, `Display Name`) make the header no field at all: `Organization 1 - Type` is
not the company, `E-Mail-Typ` not the email.

Every header that names a field gets a score (0..1): an unqualified term 1.0, the tools' main groups
(`Default Address`, `Mailing`, `Business`) a little less, home, shipping and "other" groups less again,
a second one (`Phone 2`, `E-mail 2 - Value`) less still; a header no rule names but close to a term
(rapidfuzz ratio >= 80) gets a low one. `assign` then gives each field its best column and each column at
most one field, the best scores first; the address also takes the continuation lines of its own group
(`Address2`, `Street 2`, `Card Address Line2`, `Extended Address`); `full_name` only when neither name
part has a column.

What a column's values look like (shared.spreadsheet.evidence) then confirms or questions these scores.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from unidecode import unidecode

from shared.customers.fields import CUSTOMER_FIELDS, FULL_NAME
from shared.spreadsheet.evidence import Profile, guess, profile, weigh

# Targets a header can name: the customer fields and full_name (split by shared.spreadsheet.names).
TARGETS: tuple[str, ...] = (*CUSTOMER_FIELDS, FULL_NAME)

# Terms per target, folded (lower-case ASCII words), in English, German, French, Spanish, Dutch, Italian
# and Portuguese, plus the tools' own spellings. A term's weight is below 1 where it is a weaker name for
# the field (`Province Code` beside `Province`, a bare `Name`).
_TERMS: dict[str, dict[str, float]] = {
    "email": dict.fromkeys(
        "email|e mail|mail|email address|e mail address|emailaddress|email addr|e mail adresse|emailadresse|"
        "mail adresse|mailadresse|courriel|adresse email|adresse e mail|adresse mail|adresse courriel|"
        "correo|correo electronico|email correo|e mail adres|emailadres|mailadres|indirizzo email|"
        "indirizzo e mail|posta elettronica|endereco de email|endereco de e mail|endereco email|"
        "primary email|email 1|e mail 1|customer email|contact email|work email".split("|"),
        1.0,
    ),
    "first_name": dict.fromkeys(
        "first name|firstname|first|given name|givenname|forename|fname|vorname|prenom|nombre|nombres|"
        "primer nombre|voornaam|roepnaam|nome|primeiro nome|nome proprio|given".split("|"),
        1.0,
    ),
    "last_name": dict.fromkeys(
        "last name|lastname|last|surname|family name|familyname|lname|nachname|familienname|nom|"
        "nom de famille|apellido|apellidos|achternaam|familienaam|cognome|sobrenome|apelido|apelidos|"
        "ultimo nome".split("|"),
        1.0,
    ),
    FULL_NAME: {
        **dict.fromkeys(
            "full name|fullname|contact name|customer name|contact|customer|person|client name|"
            "name vorname|vollstandiger name|nom complet|nombre completo|volledige naam|nome completo|"
            "display name|member name|billing name|last name first name|first name last name|nachname vorname|"
            "vorname nachname|nom prenom|prenom nom|nombre y apellidos|nombre completo|naam|nome e cognome".split("|"),
            0.9,
        ),
        "card name": 0.8,
        "name": 0.9,
        "naam": 0.9,
    },
    "company_name": {
        **dict.fromkeys(
            "company|company name|companyname|organization|organisation|organization name|organisation name|"
            "org|org name|business name|account name|employer|firm|firma|firmenname|"
            "unternehmen|societe|entreprise|nom de l entreprise|raison sociale|empresa|nombre de la empresa|"
            "compania|bedrijf|bedrijfsnaam|organisatie|azienda|ragione sociale|societa|companhia|"
            "nome da empresa|company name 1".split("|"),
            1.0,
        ),
        "account": 0.8,
        "business": 0.8,
        "associated company": 0.95,
    },
    "address": {
        **dict.fromkeys(
            "address|street|street address|streetaddress|address 1|address1|address line 1|addressline1|"
            "address line1|line 1|line1|street 1|street1|address street|strasse|strasse und hausnummer|"
            "anschrift|adresse|adresse 1|rue|direccion|calle|domicilio|straat|adres|straatnaam|indirizzo|"
            "via|endereco|morada|rua|logradouro|postal address|mailing address|billing address|"
            "street line 1|adresszeile 1|adresszeile".split("|"),
            1.0,
        ),
    },
    "city": dict.fromkeys(
        "city|town|town city|city town|ort|stadt|wohnort|ville|commune|ciudad|localidad|poblacion|municipio|"
        "plaats|woonplaats|stad|citta|comune|localita|cidade|localidade|concelho|locality|municipality|"
        "suburb|city name".split("|"),
        1.0,
    ),
    "county": {
        **dict.fromkeys(
            "county|state|region|province|state province|state region|province state|state or province|"
            "stateprovince|bundesland|kanton|bundesland kanton|bundesland provinz|departement|canton|provincia|"
            "estado|comunidad|"
            "provincie|regio|gewest|regione|distrito|county state|state county|prefecture".split("|"),
            1.0,
        ),
        **dict.fromkeys("state code|province code|region code|state province code|provincia sigla".split("|"), 0.95),
    },
    "postal": dict.fromkeys(
        "postal|postal code|postalcode|postcode|post code|zip|zip code|zipcode|zip postal code|postal zip code|"
        "zip postal|postal zip|plz|postleitzahl|code postal|cp|codigo postal|cod postal|postcode nl|cap|"
        "codice postale|cep|codigo postal pt|eircode|pin code|pincode".split("|"),
        1.0,
    ),
    "country": {
        **dict.fromkeys(
            "country|country region|country name|land|land region|staat|pays|pais|paese|nazione|nation|"
            "country or region|countryregion".split("|"),
            1.0,
        ),
        **dict.fromkeys("country code|countrycode|country iso|iso country|landercode|code pays".split("|"), 0.95),
    },
    "phone": {
        **dict.fromkeys(
            "phone|phone number|phonenumber|telephone|telephone number|tel|tel no|phone no|telefon|"
            "telefonnummer|rufnummer|numero de telephone|telephone fixe|telefono|numero de telefono|"
            "telefoon|telefoonnummer|numero di telefono|telefone|numero de telefone|"
            "phone 1|phone1|contact phone|work phone".split("|"),
            1.0,
        ),
        **dict.fromkeys(
            "mobile|mobile phone|mobile number|mobile phone number|cell|cell phone|cellphone|mobil|"
            "mobiltelefon|handy|portable|telephone portable|movil|celular|mobiel|mobiele telefoon|cellulare|"
            "telemovel|telemovel".split("|"),
            0.9,
        ),
        **dict.fromkeys("main phone|haupttelefon|primary phone".split("|"), 0.95),
    },
    "web": dict.fromkeys(
        "web|website|web site|url|www|homepage|home page|web page|webpage|website url|web address|"
        "webseite|internetseite|internet|site web|site internet|sitio web|pagina web|webpagina|sito web|"
        "sito|site|pagina".split("|"),
        1.0,
    ),
}

# Qualifiers: words and phrases around a term saying whose or which one it is, with the weight they
# leave the match. Longer phrases are tried first.
_QUALIFIERS: dict[str, float] = {
    **dict.fromkeys(["primary", "main", "default", "preferred", "principal", "haupt"], 0.96),
    **dict.fromkeys(
        [
            "default address",
            "mailing",
            "mailing address",
            "postanschrift",
            "postadres",
            "adresse postale",
            "business",
            "business address",
            "work",
            "office",
            "company",
            "geschaftlich",
            "person",
            "contact",
            "customer",
            "client",
            "member",
            "account",
            "address 1",
            "address",
            "1",
            "value",
            "bedrijf",
            "zakelijk",
            "professionnel",
            "trabajo",
            "lavoro",
            "trabalho",
        ],
        0.92,
    ),
    **dict.fromkeys(
        [
            "billing",
            "bill",
            "bill to",
            "invoice",
            "rechnung",
            "rechnungsanschrift",
            "facturation",
            "de facturation",
            "facturacion",
            "de facturacion",
            "fatturazione",
            "di fatturazione",
            "faturamento",
            "de faturamento",
            "factuur",
            "factuuradres",
        ],
        0.9,
    ),
    **dict.fromkeys(["card", "card address"], 0.88),
    **dict.fromkeys(["home", "privat", "private", "personal", "prive", "casa", "domicile", "thuis"], 0.85),
    **dict.fromkeys(
        [
            "shipping",
            "ship to",
            "delivery",
            "lieferung",
            "lieferanschrift",
            "livraison",
            "de livraison",
            "envio",
            "de envio",
            "spedizione",
            "di spedizione",
            "entrega",
            "de entrega",
            "bezorgadres",
            "aflevering",
        ],
        0.84,
    ),
    **dict.fromkeys(["other", "weitere", "weiterer", "weiteres", "weiteres r", "weiteres e", "autre", "otro"], 0.8),
}

# Words that turn a header into something about a field rather than the field itself.
_META = frozenset(
    "type typ label status opt optin optout opted consent subscribed subscription unsubscribed bounce bounced "
    "verified verification valid validity yomi phonetic phonetique display angezeigter initials prefix suffix "
    "salutation anrede title titel middle additional weitere vornamen nickname date time created updated "
    "modified changed ip count number_of rating score owner source campaign id ids fingerprint last4 brand "
    "funding exp method format formatted extension ext po box pobox postfach department abteilung position "
    "job role symbol location icon photo picture avatar domain hash md5 sha token key flag note notes "
    "description language lang timezone gmtoff dstoff latitude longitude lat lng visible issue tax vat "
    "currency balance amount spend spent total orders delinquent plan marketing sms whatsapp".split()
)
# Meta words that may still stand inside a term ("postal address" holds none; "email address" holds none),
# checked as whole words only.

_CONTINUATION = re.compile(
    r"^(?:(?P<base>address|street|strasse|line|adresse|adresszeile|address line|street line|direccion|"
    r"indirizzo|endereco|straat|adres|rue|calle|via|rua)\s?(?P<n>[2-4])|(?P<ext>extended address|address 2|"
    r"address line 2|complement|complemento|adresszusatz|zusatz|address supplement|apartment|apt|suite|"
    r"unit|address2|address3))$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_DIGITS = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def _nfkd(text: str) -> str:
    """The hand-written fold unidecode replaces (kept to measure against it): accents stripped only."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def fold(text: object, transliterate: Callable[[str], str] = unidecode) -> str:
    """A header as lower-case ASCII words: `Straße geschäftlich` → `strasse geschaftlich`,
    `MailingCity` → `mailing city`, `E-mail 1 - Value` → `e mail 1 value`."""
    raw = "" if text is None else str(text)
    raw = _CAMEL.sub(" ", raw.strip())
    return _NON_WORD.sub(" ", transliterate(raw).lower()).strip()


_TERM_INDEX: dict[str, tuple[str, float]] = {}
_JOINED_INDEX: dict[str, tuple[str, float]] = {}
for _target, _terms in _TERMS.items():
    for _term, _weight in _terms.items():
        _TERM_INDEX.setdefault(_term, (_target, _weight))
        _JOINED_INDEX.setdefault(_term.replace(" ", ""), (_target, _weight))
_QUALIFIER_LIST = sorted(_QUALIFIERS, key=lambda q: -len(q.split()))
_QUALIFIER_ORDER = {qualifier: rank for rank, qualifier in enumerate(_QUALIFIER_LIST)}
_QUALIFIERS_BY_WORD: dict[str, list[str]] = {}
for _qualifier in _QUALIFIER_LIST:
    _QUALIFIERS_BY_WORD.setdefault(_qualifier.split()[0], []).append(_qualifier)
_JOINED_QUALIFIERS = sorted({q.replace(" ", "") for q in _QUALIFIERS if not q.isdigit()}, key=len, reverse=True)
_FUZZY_KEYS = [term for term in _TERM_INDEX if len(term) >= 5]


@dataclass(frozen=True)
class HeaderMatch:
    """What a header names: the target, a score (0..1), the qualifier group it belongs to (the
    qualifiers it was written with, folded: `default address`, `business`, ``), and the address line
    it is (1, or 2.. for a continuation line)."""

    target: str
    score: float
    group: str = ""
    line: int = 1


def _lookup(words: str) -> tuple[str, float] | None:
    return _TERM_INDEX.get(words) or _JOINED_INDEX.get(words.replace(" ", ""))


def match_header(
    text: object, *, fuzzy: bool = True, transliterate: Callable[[str], str] = unidecode
) -> HeaderMatch | None:
    """The target a header cell names, if any (see the module doc). `fuzzy` and `transliterate` are
    switches for measuring (tests/bench/header_corpus.py); the service uses the defaults."""
    folded = fold(text, transliterate)
    if not folded:
        return None
    found = _lookup(folded)
    if found is not None:
        return HeaderMatch(found[0], found[1])
    if any(word in _META for word in folded.split()) and not _lookup(_strip_meta_free(folded)):
        return None
    words = _DIGITS.sub(" ", folded).split()
    # Qualifiers (`Default Address City`, `Ort geschäftlich`, `Person - Email - Work`): at either end, a
    # single word anywhere; until what is left names a term or an address line.
    weight = 1.0
    group: list[str] = []
    changed = True
    while changed and len(words) > 1 and not _lookup(" ".join(words)) and not _CONTINUATION.match(" ".join(words)):
        changed = False
        # Only the qualifiers whose first word the header has, longest first (as _QUALIFIER_LIST).
        present = {q for word in set(words) for q in _QUALIFIERS_BY_WORD.get(word, ())}
        for qualifier in sorted(present, key=_QUALIFIER_ORDER.__getitem__):
            parts = qualifier.split()
            n = len(parts)
            starts = range(len(words) - n + 1) if n == 1 and not qualifier.isdigit() else (0, len(words) - n)
            for start in starts:
                if start < 0 or words[start : start + n] != parts or len(words) == n:
                    continue
                rest = words[:start] + words[start + n :]
                # `Address 1 - Street`: `address` qualifies only what is itself a term or a line.
                if qualifier == "address" and not (_lookup(" ".join(rest)) or _CONTINUATION.match(" ".join(rest))):
                    continue
                words = rest
                weight = min(weight, _QUALIFIERS[qualifier])
                if not qualifier.isdigit() and qualifier != "value":
                    group.append(qualifier)
                changed = True
                break
            if changed:
                break
    remainder = " ".join(words)
    qualified = " ".join(group)
    if any(word in _META for word in words) and not _lookup(remainder):
        return None
    continuation = _CONTINUATION.match(remainder)
    if continuation:
        number = continuation.group("n")
        line = int(number) if number else 3 if continuation.group("ext") == "address3" else 2
        return HeaderMatch("address", round(0.9 * weight, 3), qualified, line)
    found = _lookup(remainder)
    if found is None:
        # A number in the middle or at the end: `Organization 1 - Name`, `Phone 2`, `Telefon geschäftlich 2`.
        numbers = [word for word in words if word.isdigit()]
        plain = " ".join(word for word in words if not word.isdigit())
        found = _lookup(plain) if plain else None
        if found is not None and any(int(n) > 1 for n in numbers):
            weight *= 0.8
        if found is None and len(words) == 1 and len(group) == 0:
            found = _split_joined(words[0])
            if found is not None:
                weight *= 0.92
        # Fuzzy only for a header of a few words (a typo in a name), never an id.
        if found is None and fuzzy and plain and len(plain) <= 40 and not plain.endswith("id"):
            best = process.extractOne(plain, _FUZZY_KEYS, scorer=fuzz.ratio, score_cutoff=80)
            if best is not None:
                target, term_weight = _TERM_INDEX[best[0]]
                return HeaderMatch(target, round(0.7 * term_weight * weight * best[1] / 100, 3), qualified)
    if found is None:
        return None
    return HeaderMatch(found[0], round(found[1] * weight, 3), qualified)


def _strip_meta_free(folded: str) -> str:
    """The folded header less its qualifiers at the ends: what must be a term for a meta word in it
    (`status`, `title`) to be part of the field's name rather than about it."""
    words = folded.split()
    while len(words) > 1 and (words[0] in _QUALIFIERS or words[0].isdigit()):
        words = words[1:]
    while len(words) > 1 and (words[-1] in _QUALIFIERS or words[-1].isdigit()):
        words = words[:-1]
    return " ".join(words)


def _split_joined(word: str) -> tuple[str, float] | None:
    """A qualifier written onto its term without a space (Salesforce's `MAILINGCITY`, `BILLINGSTREET`)."""
    for qualifier in _JOINED_QUALIFIERS:
        if word.startswith(qualifier) and len(word) > len(qualifier):
            found = _JOINED_INDEX.get(word[len(qualifier) :])
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class Suggestion:
    """A column's suggested target, how sure (0..1) and why (`header` or `values`)."""

    target: str | None
    confidence: float = 0.0
    reason: str | None = None


def assign(
    scores: Sequence[dict[str, float]],
    matches: Sequence[HeaderMatch | None],
    guesses: Sequence[tuple[str, float] | None] = (),
) -> list[Suggestion]:
    """Each target to its best column and each column to at most one target, the highest scores first
    (the leftmost column on a tie). `scores[i]`: target → the header's score for column i, as the
    values weigh it; `matches[i]`: the header match of column i (for the address lines); `guesses[i]`:
    what column i's values alone point to, placed only after every header match, for targets and
    columns still free (a value guess never beats a header match)."""
    ranked = sorted(
        ((score, -index, target) for index, by_target in enumerate(scores) for target, score in by_target.items()),
        reverse=True,
    )
    result = [Suggestion(None) for _ in scores]
    taken: set[str] = set()
    for score, negative, target in ranked:
        index = -negative
        if score < MIN_SCORE or target in taken or result[index].target is not None:
            continue
        match = matches[index]
        if target == "address" and match is not None and match.line > 1:
            continue  # a continuation line joins the address of its group below; it never leads
        result[index] = Suggestion(target, round(min(score, 1.0), 2), "header")
        taken.add(target)
    # The address's continuation lines (`Address2`, `Street 2`, `Card Address Line2`) of the same group.
    lead = next((i for i, s in enumerate(result) if s.target == "address"), None)
    lead_match = matches[lead] if lead is not None else None
    if lead is not None and lead_match is not None:
        for index, match in enumerate(matches):
            if (
                match is not None
                and match.target == "address"
                and match.line > 1
                and match.group == lead_match.group
                and result[index].target is None
            ):
                result[index] = Suggestion("address", result[lead].confidence, "header")
    # full_name only where neither name part has a column of its own.
    if any(s.target in ("first_name", "last_name") for s in result):
        result = [Suggestion(None) if s.target == FULL_NAME else s for s in result]
    for index, found in sorted(enumerate(guesses), key=lambda item: -(item[1] or ("", 0.0))[1]):
        if found is not None and found[0] not in taken and result[index].target is None:
            result[index] = Suggestion(found[0], found[1], "values")
            taken.add(found[0])
    return result


# A suggestion at least this sure is part of the preview's mapping (and so of an import started with a
# mapping that does not name its field); below it the column is only hinted.
CONFIDENT = 0.6
# The data rows whose values weigh the suggestions (the preview's first rows).
SAMPLE_ROWS = 20

# A header match the values weigh below this is no suggestion (a `Phone` column of record ids).
MIN_SCORE = 0.3

# Columns a mailing tool adds about where a subscriber signed up (Mailchimp: LATITUDE, LONGITUDE, GMTOFF,
# TIMEZONE, CC, REGION): a `REGION` or `CC` among them is the sign-up location, not the customer's county.
_SIGNUP_MARKERS = frozenset({"latitude", "longitude", "gmtoff", "dstoff", "timezone"})
_SIGNUP_DISTANCE = 6


def _signup_columns(folded: Sequence[str]) -> set[int]:
    markers = [i for i, text in enumerate(folded) if text in _SIGNUP_MARKERS]
    if len(markers) < 2:
        return set()
    return {
        i
        for i, text in enumerate(folded)
        if text in ("region", "cc") and any(abs(i - m) <= _SIGNUP_DISTANCE for m in markers)
    }


def header_scores(
    cells: Sequence[object], *, fuzzy: bool = True, transliterate: Callable[[str], str] = unidecode
) -> list[HeaderMatch | None]:
    """match_header of each header cell."""
    return [match_header(cell, fuzzy=fuzzy, transliterate=transliterate) for cell in cells]


def suggest_from_header(cells: Sequence[object]) -> list[Suggestion]:
    """Suggestions from the header alone (no values): for the worker's automatic columns and tests."""
    matches = header_scores(cells)
    signup = _signup_columns([fold(cell) for cell in cells])
    return assign([{m.target: m.score} if m and i not in signup else {} for i, m in enumerate(matches)], matches)


def suggest_columns(
    cells: Sequence[object] | None,
    values: Sequence[Sequence[str]],
    *,
    fuzzy: bool = True,
    transliterate: Callable[[str], str] = unidecode,
) -> list[Suggestion]:
    """The suggestion for each column: `cells` the header row (None for a file without one), `values[i]`
    the sample values of column i (normalised, empty ones left out). Header matches weighed by the
    values first, then value-only guesses for what is left."""
    width = max(len(values), len(cells or ()))
    header = list(cells or ()) + [None] * (width - len(cells or ()))
    samples = list(values) + [[]] * (width - len(values))
    matches = header_scores(header, fuzzy=fuzzy, transliterate=transliterate)
    signup = _signup_columns([fold(cell, transliterate) for cell in header])
    shapes = [profile(column) for column in samples]
    scores: list[dict[str, float]] = []
    guesses: list[tuple[str, float] | None] = []
    for index, (match, shape) in enumerate(zip(matches, shapes, strict=True)):
        if match is not None and index not in signup:
            scores.append({match.target: round(weigh(match.target, match.score, shape), 3)})
            guesses.append(None)
        else:
            scores.append({})
            named = fold(header[index], transliterate)
            # A column whose header names something else (`Total Spend`, `OPTIN_IP`) is not guessed from
            # its values; one with no header, or a header no rule reads, is.
            guesses.append(guess(shape) if not named or index in signup else _guess_unnamed(named, shape))
    return assign(scores, matches, guesses)


def _guess_unnamed(named: str, shape: Profile) -> tuple[str, float] | None:
    if any(word in _META for word in named.split()):
        return None
    return guess(shape)


def header_positions(cells: Sequence[object]) -> dict[str, list[int]]:
    """Target → its columns in order (several for the address and its second lines), by the header alone:
    the automatic columns of an import given no mapping for them (shared.spreadsheet.mapping)."""
    positions: dict[str, list[int]] = {}
    for index, suggestion in enumerate(suggest_from_header(cells)):
        if suggestion.target is not None:
            positions.setdefault(suggestion.target, []).append(index)
    return positions
