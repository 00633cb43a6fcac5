"""How one model's calls are worded: a system prompt prefix and suffix, or a template.

    phrasing = Phrasing.template("xml", system="{system}\\n\\nAnswer in <answer> tags.", user="<q>{prompt}</q>")
    phrasing.render("Be brief.", "What is a monad?")
    # ('Be brief.\\n\\nAnswer in <answer> tags.', '<q>What is a monad?</q>')

A template has two parts, each text with two placeholders, ``{system}`` (the caller's
system prompt, empty when there is none) and ``{prompt}`` (the user's prompt):

- ``system`` renders the system prompt sent (default ``{system}``); surrounding whitespace is
  trimmed, and when nothing is left no system prompt is sent;
- ``user`` renders the user turn sent (default ``{prompt}``), exactly as rendered.

``{{`` and ``}}`` are literal braces. ``{prompt}`` must appear in one of the two parts, so the
user's prompt is never dropped. A prefix and a suffix instead put text before and after the
caller's system prompt, each joined to it by a blank line.

``hash`` identifies the wording (both parts, or the prefix and suffix), whatever the prompt: the
ledger records it beside ``name``, so two phrasings can be compared (``mmr costs --by template``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

PLACEHOLDERS = ("system", "prompt")
INLINE = "inline"  # the name of a phrasing given in place (a prefix and suffix, or a template mapping)
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def placeholders(text: str) -> list[str]:
    """The placeholders ``text`` uses, in order; ValueError naming the first that is not one."""
    found = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise ValueError(f"a single {token!r} (write {token * 2} for a literal brace)")
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} (placeholders: {{system}}, {{prompt}}; "
                             "write {{ and }} for literal braces)")
        found.append(name)
    return found


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each placeholder replaced by its value (checked by :func:`placeholders` at load)."""

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values[match.group(1)]

    return _TOKEN.sub(one, text)


@dataclass(frozen=True)
class Phrasing:
    """A model's wording: ``kind`` ``template`` (``system`` and ``user`` parts) or ``affix``
    (``prefix`` and ``suffix`` around the caller's system prompt). ``name``: the template's name in
    ``templates:``, else :data:`INLINE`. ``where``: the key path that set it (for dry runs)."""

    name: str
    kind: str
    system: str = "{system}"
    user: str = "{prompt}"
    prefix: str = ""
    suffix: str = ""
    where: str = field(default="", compare=False)

    @classmethod
    def template(cls, name: str, system: str = "{system}", user: str = "{prompt}", where: str = "") -> "Phrasing":
        return cls(name, "template", system=system, user=user, where=where)

    @classmethod
    def affix(cls, prefix: str = "", suffix: str = "", where: str = "") -> "Phrasing":
        return cls(INLINE, "affix", prefix=prefix.strip(), suffix=suffix.strip(), where=where)

    @property
    def hash(self) -> str:
        """16 hex digits of SHA-256 of the wording: the same for every request that used it."""
        parts = ({"system": self.system, "user": self.user} if self.kind == "template"
                 else {"prefix": self.prefix, "suffix": self.suffix})
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def render(self, system: str | None, prompt: str) -> tuple[str | None, str]:
        """(the system prompt to send, None for none; the user turn to send)."""
        if self.kind == "affix":
            joined = "\n\n".join(part for part in (self.prefix, system or "", self.suffix) if part)
            return joined or None, prompt
        values = {"system": system or "", "prompt": prompt}
        rendered = fill(self.system, values).strip()
        return rendered or None, fill(self.user, values)

    def describe(self) -> str:
        """One line for people: what this phrasing is and its hash."""
        what = f"template {self.name}" if self.kind == "template" and self.name != INLINE else (
            "inline template" if self.kind == "template" else "system prefix/suffix")
        return f"{what} ({self.hash}, from {self.where})" if self.where else f"{what} ({self.hash})"
