"""A tiers file that words each model its own way, for the prompt-wording tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# anthropic: the "claude" template (provider level); openai: a system prefix (provider level);
# plain: no wording of its own, so its models take their tier's.
WORDED_CONFIG = """\
version: 1
baseline_tier: complex
templates:
  claude:
    system: "{{system}}\\n\\nAnswer inside <answer> tags."
    user: "<question>\\n{{prompt}}\\n</question>"
  json-only:
    system: "Reply with JSON only. {{{{\\"answer\\": ...}}}}"
    user: "{{system}}\\n\\n{{prompt}}"
providers:
  anthropic:
    type: anthropic
    api_key_env: TEST_ANTHROPIC_KEY
    base_url: {url}
    timeout: 2
    system_template: claude
  openai:
    type: openai
    api_key_env: TEST_OPENAI_KEY
    base_url: {url}/v1
    timeout: 2
    system_prefix: "You are terse."
  plain:
    type: openai
    api_key_env: TEST_OPENAI_KEY
    base_url: {url}/v1
    timeout: 2
tiers:
  - name: simple
    models:
      - {{provider: anthropic, model: claude-small, price: {{input: 0.80, output: 4.00}}, max_tokens: 64, stop: ["</answer>"]}}
      - {{provider: openai, model: gpt-small, price: {{input: 0.15, output: 0.60}}, max_tokens: 64, stop: [END, STOP], temperature: 0.3}}
  - name: medium
    system_suffix: Medium tier.
    models:
      - {{provider: anthropic, model: claude-mid, price: {{input: 3.00, output: 15.00}}, max_tokens: 128, system_template: {{user: "Q: {{prompt}}"}}}}
      - {{provider: openai, model: gpt-mid, price: {{input: 2.50, output: 10.00}}, max_tokens: 128}}
      - {{provider: plain, model: gpt-plain, price: {{input: 2.50, output: 10.00}}, max_tokens: 128, system_template: json-only}}
  - name: complex
    system_suffix: Think hard.
    models:
      - {{provider: plain, model: gpt-big, price: {{input: 1.25, output: 10.00}}, max_tokens: 256}}
retry:
  max_retries: 0
{extra}"""


def write_worded(path: Path, url: str, extra: str = "") -> Path:
    path.write_text(WORDED_CONFIG.format(url=url, extra=extra))
    return path


def template_hash(**parts: str) -> str:
    """The ledger's template_hash, computed here independently: SHA-256 of the parts as sorted JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


CLAUDE = template_hash(system="{system}\n\nAnswer inside <answer> tags.", user="<question>\n{prompt}\n</question>")
TERSE = template_hash(prefix="You are terse.", suffix="")
THINK = template_hash(prefix="", suffix="Think hard.")
