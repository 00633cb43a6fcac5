"""Rule patterns that cannot hang: which regular expressions the config refuses, and why.

Python's ``re`` backtracks and has no timeout; it cannot be stopped from
another thread either (``--batch`` classifies in threads). So the time a rule
may take is bounded in two ways that need no timer:

* the config refuses patterns whose backtracking can grow exponentially, or
  polynomially with two repeats side by side: such a pattern can hang on a
  prompt of a few dozen characters (``(a+)+$``) or a few thousand
  (``a*a*$``). :func:`backtracking_risk` names the construct;
* the rules classifier looks at a bounded slice of a long prompt
  (``classify/rules.py``), so what is left (``compar.*and.*contrast`` costs
  the cube of the length on hostile text) stays fast.

The check reads the parsed pattern and is conservative: it may refuse a pattern
that would in fact be fast (``(\\s+\\w+)+``), never with a vague message.
"""

from __future__ import annotations

import importlib
import itertools
import re
from typing import Any

try:  # the parser re itself uses: the tree of the pattern it compiles
    sre: Any = importlib.import_module("re._constants")
    parser: Any = importlib.import_module("re._parser")
except ImportError:  # Python 3.10
    sre = importlib.import_module("sre_constants")
    parser = importlib.import_module("sre_parse")

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT} | ({sre.POSSESSIVE_REPEAT} if hasattr(sre, "POSSESSIVE_REPEAT") else set())
_ZERO_WIDTH = {sre.AT, sre.ASSERT, sre.ASSERT_NOT}
# Characters a single-character item is tried on to see whether two items overlap.
_SAMPLES = frozenset(map(chr, range(256))) | frozenset("\u00a0\u2003\u0660\u0663\u00e9\u00df\u4e2d\u0416\u03a9\U0001f600")
_CATEGORIES = {
    sre.CATEGORY_DIGIT: re.compile(r"\d"), sre.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    sre.CATEGORY_SPACE: re.compile(r"\s"), sre.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    sre.CATEGORY_WORD: re.compile(r"\w"), sre.CATEGORY_NOT_WORD: re.compile(r"\W"),
}


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` could backtrack for ever on some prompt, or None. ``pattern`` compiles."""
    try:
        items = list(parser.parse(pattern))
        why = _sequence(items, inside_repeat=False)
        spills = sum(_spills(seq) for seq in _sequences(items))
    except RecursionError:
        return "it nests too deeply to check"
    if why is None and spills > MAX_SPILLING:
        why = ("repeats that can run on over what follows them, like .*a.*b or .*x.*y.*z, can take polynomial "
               "time; use at most two, each followed by a word of 3 or more letters, or one followed by anything")
    return why


# Repeats that can match the text after them (each .* in compar.*and.*contrast) multiply the work on
# hostile text by its length; one before a word of 3+ letters counts 1, before anything else 2. The
# seed patterns reach 2: .*and, .*contrast.
MAX_SPILLING = 2


def _sequences(items: list):
    yield items
    for op, av in items:
        if op is sre.SUBPATTERN:
            yield from _sequences(list(av[-1]))
        elif op is sre.BRANCH:
            for b in av[1]:
                yield from _sequences(list(b))
        elif op in _REPEATS:
            yield from _sequences(list(av[2]))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            yield from _sequences(list(av[1]))


def _spills(items: list) -> int:
    """How many variable repeats of ``items`` can also match the first character of what follows them."""
    count = 0
    for i, (op, av) in enumerate(items):
        if op not in _REPEATS or av[0] == av[1]:
            continue
        rest = [item for item in items[i + 1:] if item[0] not in _ZERO_WIDTH]
        if not rest or rest[0][0] in _REPEATS:  # nothing after it, or a repeat: _side_by_side's case
            continue
        mine, theirs = _repeat_chars((op, av)), _first_chars(rest[:1])
        if mine is None or theirs is None or mine & theirs:
            # Backtracking stops only where what follows matches: a word of 3+ letters occurs a third as often.
            word = len(list(itertools.takewhile(lambda item: item[0] is sre.LITERAL, rest))) >= 3
            count += 1 if word else 2
    return count


def _sequence(items: list, inside_repeat: bool) -> str | None:
    for i, (op, av) in enumerate(items):
        if op in _REPEATS:
            low, high, body = av
            if inside_repeat and low != high:
                return "a repeat inside a repeated group, like (a+)+, can take exponential time"
            why = _repeated_body(list(body)) if high > 1 else _sequence(list(body), inside_repeat)
            if why or (low != high and (why := _side_by_side(items, i))):
                return why
        elif op is sre.GROUPREF or op is sre.GROUPREF_EXISTS:
            return "a back-reference can take exponential time"
        elif (why := _children(op, av, inside_repeat)):
            return why
    return None


def _children(op, av, inside_repeat: bool) -> str | None:
    if op is sre.SUBPATTERN:
        return _sequence(list(av[-1]), inside_repeat)
    if op is sre.BRANCH:
        return next(filter(None, (_sequence(list(b), inside_repeat) for b in av[1])), None)
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return _sequence(list(av[1]), inside_repeat)
    if getattr(sre, "ATOMIC_GROUP", None) is op:
        return _sequence(list(av), inside_repeat)
    return None


def _repeated_body(body: list) -> str | None:
    """A repeated group: no repeat inside it, no alternatives that can match the same text."""
    why = _sequence(body, inside_repeat=True)
    if why:
        return why
    for op, av in _walk(body):
        if op is sre.BRANCH:
            branches = [list(b) for b in av[1]]
            firsts = [_first_chars(b) for b in branches]
            known = [f for f in firsts if f is not None]
            if len(known) < len(firsts) or any(a & b for i, a in enumerate(known) for b in known[i + 1:]):
                return "a repeated group whose alternatives can match the same text, like (a|ab)*, can take exponential time"
    return None


def _side_by_side(items: list, i: int) -> str | None:
    """Repeat ``items[i]`` and the next repeat, with nothing between them that must match a character."""
    mine = _repeat_chars(items[i])
    for op, av in items[i + 1:]:
        if op in _ZERO_WIDTH:
            continue
        if op in _REPEATS and av[0] != av[1]:
            theirs = _repeat_chars((op, av))
            if mine is None or theirs is None or mine & theirs:
                return "two repeats side by side that can match the same characters, like a*a*, can take polynomial time"
        if op in _REPEATS and av[0] == 0:
            continue
        return None
    return None


def _walk(items: list):
    for op, av in items:
        yield op, av
        if op is sre.SUBPATTERN:
            yield from _walk(list(av[-1]))
        elif op is sre.BRANCH:
            for b in av[1]:
                yield from _walk(list(b))


def _repeat_chars(item) -> frozenset | None:
    """The characters a repeat of one character matches (None: a longer body, taken as anything)."""
    body = list(item[1][2])
    return _char_set(*body[0]) if len(body) == 1 else None


def _first_chars(branch: list) -> frozenset | None:
    """The characters a branch can start with; None when unknown or when it can match nothing."""
    for op, av in branch:
        if op in _ZERO_WIDTH:
            continue
        if op is sre.SUBPATTERN:
            return _first_chars(list(av[-1]))
        if op is sre.BRANCH:
            firsts = [_first_chars(list(b)) for b in av[1]]
            known = [f for f in firsts if f is not None]
            return frozenset().union(*known) if len(known) == len(firsts) else None
        return _char_set(op, av)
    return None


def _char_set(op, av) -> frozenset | None:
    """The sample characters one item matches; None when it is not a single character."""
    if op is sre.LITERAL:
        return frozenset({chr(av)})
    if op is sre.NOT_LITERAL:
        return _SAMPLES - {chr(av)}
    if op is sre.ANY:
        return _SAMPLES - {"\n"}
    if op is not sre.IN:
        return None
    negate, chars = False, set()
    for kind, value in av:
        if kind is sre.NEGATE:
            negate = True
        elif kind is sre.LITERAL:
            chars.add(chr(value))
        elif kind is sre.RANGE:
            chars |= {c for c in _SAMPLES if value[0] <= ord(c) <= value[1]} | {chr(value[0]), chr(value[1])}
        elif kind is sre.CATEGORY and value in _CATEGORIES:
            chars |= {c for c in _SAMPLES if _CATEGORIES[value].match(c)}
        else:
            return None
    return frozenset(_SAMPLES - chars) if negate else frozenset(chars)
