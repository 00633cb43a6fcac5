"""Find, read and parse the tiers file into a validated :class:`Config`.

Resolution order: ``--config PATH``, else ``$MMR_CONFIG``, else ``./tiers.yaml``,
else ``$XDG_CONFIG_HOME/mmr/tiers.yaml`` (``~/.config/mmr/tiers.yaml``), else
the built-in default (identical to ``tiers.example.yaml``).

Every problem is reported as ``FILE: key.path[index]: problem``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .schema import Config
from .validate import validate

DEFAULT_CONFIG = Path(__file__).parent.parent / "tiers.default.yaml"
PREBUILT_DEFAULT = DEFAULT_CONFIG.with_suffix(".json")
DEFAULT_LABEL = "built-in default config"


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mmr"


def resolve_config_path(explicit: str | os.PathLike | None = None) -> Path:
    """Which tiers file to read, following the documented order."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MMR_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path("tiers.yaml"), user_config_dir() / "tiers.yaml"):
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, parse and validate a tiers file (see :func:`resolve_config_path`)."""
    return parse_config(*read_config(path))


def read_config(path: str | os.PathLike | None = None) -> tuple[str, str]:
    """The text of a tiers file and the name its errors give it (a pipe can be read only once:
    :func:`parse_config` can then parse the text again, in another process)."""
    resolved = resolve_config_path(path)
    label = DEFAULT_LABEL if resolved == DEFAULT_CONFIG else str(resolved)
    try:
        raw = resolved.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read: {e.strerror}") from None
    try:
        return raw.decode("utf-8"), label
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; ``source`` names the file in error messages."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    data = prebuilt_default(digest)
    config = validate(parse_yaml(text, source) if data is None else data, source)
    return replace(config, config_hash=digest[:16])


def prebuilt_default(digest: str) -> Any:
    """The data of the built-in default config when ``digest`` is its text's, else None.

    tiers.default.json holds it parsed (a test keeps it in step with the YAML), so
    that the default config, or an unchanged copy of it, is read without a YAML parser:
    importing one costs more than everything else the rules classifier does.
    """
    try:
        prebuilt = json.loads(PREBUILT_DEFAULT.read_bytes(), parse_float=exact_float)
    except (OSError, ValueError):
        return None
    return prebuilt["data"] if prebuilt.get("sha256") == digest else None


def parse_yaml(text: str, source: str) -> Any:
    """The data in YAML ``text``: mappings without duplicate keys, floats that keep their digits."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None
    except ValueError as e:  # e.g. an integer too long for Python to convert
        raise ConfigError(f"{source}: invalid YAML: {e}") from None


class ExactFloat(float):
    """A float that remembers the digits written, so prices stay exact (see checks.exact_text)."""

    text: str


def exact_float(text: str) -> ExactFloat:
    value = ExactFloat(text)
    value.text = text
    return value


_LOADER = None


def _loader():
    """A safe YAML loader (libyaml's when there is one) that rejects duplicate keys and keeps floats' digits."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[valid-type, misc]
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (the first would be ignored)", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    def construct_float(loader, node):
        value = ExactFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
        value.text = node.value.replace("_", "")
        return value

    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_mapping)
    _LOADER = Loader
    return Loader
