"""Captions <-> attributes, in the challenge's own phrasing.

Vehicle captions are one template ("This is a white Audi", "A Truck"); test queries add a final
period. Pedestrian captions are free paraphrases of the attribute flags ("A walking woman who is
between 18 and 60 years old, and is standing sideways and has a shoulderbag. She is wearning
glasses."), typos included. They are read by a table of phrase rules: each match is removed from
the text, then a closed list of connective phrases; whatever is left is content no rule knows,
so an unknown attribute shows up instead of being silently dropped.
"""

from __future__ import annotations

import random
import re
from dataclasses import fields
from typing import Iterable, Optional

from .attributes import Pedestrian, Vehicle
from .vocab import Vocabulary

# ---------------------------------------------------------------- vehicles

VEHICLE_STYLES = ("This is a", "A")
_VEHICLE_CAPTION = re.compile(r"(This is|) ?an? (.+)", re.IGNORECASE)


def _article(word: str, style: str) -> str:
    """The style's prefix with "a" or "an" agreeing with ``word`` (the challenge writes "A SUV")."""
    an = word[:1].lower() in "aeiou"
    return {"This is a": "This is an", "A": "An"}[style] if an else style


def vehicle_caption(v: Vehicle, prefix: str = "This is a", period: bool = False) -> str:
    """"This is a white Audi", "An orange Chana", "A Truck."; ``prefix`` picks the style."""
    if prefix not in VEHICLE_STYLES:
        raise ValueError(f"vehicle caption prefix must be one of {VEHICLE_STYLES}, got {prefix!r}")
    text = v.to_text()
    if not text:
        raise ValueError("an empty vehicle has no caption")
    return f"{_article(text, prefix)} {text}" + ("." if period else "")


def parse_vehicle_caption(text: str, vocab: Vocabulary) -> Optional[tuple[str, Vehicle]]:
    """(style, Vehicle) of a vehicle caption or query; None when the text is not one."""
    m = _VEHICLE_CAPTION.fullmatch(text.strip().removesuffix("."))
    if m is None:
        return None
    vehicle = vocab.parse(m.group(2))
    if vehicle is None:
        return None
    return ("This is a" if m.group(1) else "A"), vehicle


# ------------------------------------------------------------- pedestrians

# The real captions' phrasings, one entry per (field, value): the generator draws among them and
# the parser accepts every one. Bags and clothing are phrased as in the challenge's captions.
AGE_PHRASES = {
    "<18": ("less than 18 years old", "a minor", "age 18 or younger", "not an adult"),
    "18-60": ("between 18 and 60 years old", "an adult person aged 18-60"),
    ">60": (
        "an elderly person over 60 years old", "aged 60 or older", "at least 60 years old", "aged over 60",
    ),
}
ORIENTATION_PHRASES = {  # led by "with his/her" (front, back) or "and" (side)
    "front": ("body facing the camera",),
    "back": ("body back to the camera",),
    "side": ("is standing sideways",),
}
OPENINGS = (
    "A {male} pedestrian who is",
    "A pedestrian who is {male} is",
    "A walking {man} who is",
    "A {male} pedestrian is someone who walks on foot, is",
)
CARRY_PHRASES = {
    "handbag": ("with a handbag", "carrying a handbag", "holding a handbag", "clutching a handbag"),
    "shoulder_bag": (
        "with a shoulderbag", "has a shoulderbag", "is carrying a shoulder bag", "has a bag over the shoulder",
    ),
    "backpack": ("with a backpack", "carrying a backpack"),
    "holding": ("holds objects in front",),
}
SHIRT_PHRASES = {
    "short": ("short sleeve shirt", "shirt with short sleeves", "tee shirt with short sleeves"),
    "long": ("long sleeve shirt", "shirt with long sleeves", "tee shirt with long sleeves"),
    None: ("shirt",),
}
PATTERNS = {"upper_stripe": "stripe", "upper_logo": "logo", "upper_plaid": "plaid", "upper_splice": "splice"}
PATTERN_PHRASES = ("an upper {}", "a {} on the upper")
SKIRT_PHRASES = ("in a skirt or dress", "wearing skirt or dress")
WEAR_PHRASES = {
    "hat": ("a hat",),
    "glasses": ("glasses",),
    "long_coat": ("a longcoat", "a coat that is long"),
    "boots": ("boots",),
}
WEAR_VERBS = ("wearning", "wearing")  # "wearning" is the challenge's own (frequent) typo
_GENDER_WORDS = {"male": {"male": "male", "man": "man", "his": "his", "He": "He"},
                 "female": {"male": "female", "man": "woman", "his": "her", "He": "She"}}


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){pattern}(?![\w-])", re.IGNORECASE)


def _alternatives(phrases: Iterable[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


# (field, value, pattern), applied in order, longest phrases of a kind first. Pronouns are gender
# evidence of their own, so "with her body facing the camera" says female and front.
_RULES: tuple[tuple[str, object, re.Pattern[str]], ...] = (
    *((f, v, _rule(_alternatives(ps)))
      for f, table in (("age", AGE_PHRASES), ("orientation", ORIENTATION_PHRASES)) for v, ps in table.items()),
    *((f, True, _rule(_alternatives(ps))) for f, ps in CARRY_PHRASES.items()),
    *((f, True, _rule(_alternatives(ps))) for f, ps in WEAR_PHRASES.items()),
    *((f, True, _rule(_alternatives(p.format(w) for p in PATTERN_PHRASES))) for f, w in PATTERNS.items()),
    ("skirt_dress", True, _rule(_alternatives(SKIRT_PHRASES))),
    ("sleeve", "short", _rule(r"short sleeves?")),
    ("sleeve", "long", _rule(r"long sleeves?")),
    ("gender", "female", _rule(r"female|woman|her|she")),
    ("gender", "male", _rule(r"male|man|his|he")),
)
# The closed list of words that carry no attribute. Anything else left over is unrecognised.
_CONNECTIVES = _rule(
    "|".join(("is someone who walks on foot", "who is", "pedestrian", "walking", "tee shirt", "shirt",
              "in", "with", "and", "is", *WEAR_VERBS, "an?"))
)
_REQUIRED = ("gender", "age", "orientation")


def _scan(text: str) -> tuple[dict[str, set], str]:
    """The values each rule found, and the text no rule or connective accounts for."""
    found: dict[str, set] = {}
    for field, value, pattern in _RULES:
        text, n = pattern.subn(" ", text)
        if n:
            found.setdefault(field, set()).add(value)
    leftover = re.findall(r"[^\s,.;:!?]+", _CONNECTIVES.sub(" ", text))
    return found, " ".join(leftover)


def unrecognised_text(text: str) -> str:
    """The words of a pedestrian caption that no rule matched ("" when all is understood)."""
    return _scan(text)[1]


def parse_pedestrian_caption(text: str) -> Pedestrian:
    """A pedestrian caption's attributes; ValueError names unknown, conflicting or missing parts."""
    found, leftover = _scan(text)
    if leftover:
        raise ValueError(f"unrecognised text in pedestrian caption: {leftover!r}")
    conflicting = {f: sorted(map(str, vs)) for f, vs in found.items() if len(vs) > 1}
    if conflicting:
        raise ValueError(f"conflicting attributes in pedestrian caption: {conflicting}")
    missing = [f for f in _REQUIRED if f not in found]
    if missing:
        raise ValueError(f"pedestrian caption does not state {', '.join(missing)}")
    known = {f.name for f in fields(Pedestrian)}
    return Pedestrian(**{f: vs.pop() for f, vs in found.items() if f in known})


def pedestrian_caption(p: Pedestrian, rng: random.Random) -> str:
    """A caption stating every set attribute of ``p``, paraphrased like the real ones.

    The first sentence says who (gender, age), how they stand and what they carry; then a
    clothing sentence and a "wearing" sentence, each only when it has something to say.
    """
    words = _GENDER_WORDS[p.gender]
    first = rng.choice(OPENINGS).format(**words) + " " + rng.choice(AGE_PHRASES[p.age]) + ", "
    first += "and " if p.orientation == "side" else f"with {words['his']} "
    first += rng.choice(ORIENTATION_PHRASES[p.orientation])
    first += "".join(" and " + rng.choice(ps) for f, ps in CARRY_PHRASES.items() if getattr(p, f))
    sentences = [first + "."]

    patterns = [rng.choice(PATTERN_PHRASES).format(w) for f, w in PATTERNS.items() if getattr(p, f)]
    if p.sleeve or patterns:
        clothing = "in a " + rng.choice(SHIRT_PHRASES[p.sleeve])
        clothing += "".join((" with " if i == 0 else " and ") + ph for i, ph in enumerate(patterns))
        if p.skirt_dress:
            clothing += " and " + rng.choice(SKIRT_PHRASES)
        sentences.append(f"{words['He']} is {clothing}.")
    elif p.skirt_dress:
        sentences.append(f"{words['He']} is {rng.choice(SKIRT_PHRASES)}.")

    worn = [rng.choice(ps) for f, ps in WEAR_PHRASES.items() if getattr(p, f)]
    if worn:
        sentences.append(f"{words['He']} is {rng.choice(WEAR_VERBS)} {','.join(worn)}.")
    return " ".join(sentences)
