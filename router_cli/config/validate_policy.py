"""The tiers file's policy sections: retries, the ledger, cascades, circuit breakers,
budgets, the response cache and ``mmr serve``. Each function checks one section (see validate.py)."""

from __future__ import annotations

from typing import Any

from .checks import Checks, join, kind
from .schema import (
    GATES, MAX_OUTPUT_TOKENS, MAX_RETRIES, MAX_SECONDS, MAX_USD, STORE_MODES, BreakerConfig, Budget, CacheConfig,
    CascadeConfig, LedgerConfig, RetryPolicy, ServeConfig, ServeKey,
)


def retry(c: Checks, value: Any) -> RetryPolicy:
    section = c.mapping(value, "retry", {"max_retries", "backoff_base", "backoff_max", "max_retry_after"})
    d = RetryPolicy()
    return RetryPolicy(
        max_retries=c.integer(section.get("max_retries", d.max_retries), "retry.max_retries", maximum=MAX_RETRIES),
        backoff_base=c.number(section.get("backoff_base", d.backoff_base), "retry.backoff_base", maximum=MAX_SECONDS),
        backoff_max=c.number(section.get("backoff_max", d.backoff_max), "retry.backoff_max", maximum=MAX_SECONDS),
        max_retry_after=c.number(section.get("max_retry_after", d.max_retry_after), "retry.max_retry_after",
                                 maximum=MAX_SECONDS),
    )


def ledger(c: Checks, value: Any) -> LedgerConfig:
    section = c.mapping(value, "ledger", {"store", "preview_chars", "busy_timeout", "url"})
    store = section.get("store", "full")
    if store not in STORE_MODES:
        raise c.fail("ledger.store", f"expected one of {', '.join(STORE_MODES)}, got {store!r}")
    return LedgerConfig(
        store,
        c.integer(section.get("preview_chars", 200), "ledger.preview_chars", minimum=1),
        c.number(section.get("busy_timeout", 10), "ledger.busy_timeout", minimum=0.0, maximum=3600),
        _ledger_url(c, section.get("url")),
    )


def _ledger_url(c: Checks, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        from ..errors import redact_url

        raise c.fail("ledger.url", f"expected a postgresql:// URL, got {redact_url(str(value))!r}")
    return value


def cascade(c: Checks, value: Any, tiers: list[str]) -> CascadeConfig:
    section = c.mapping(value, "cascade", {"gate", "threshold", "thresholds", "judge_tier", "judge_max_tokens", "on_judge_error",
                                                "checks", "check_timeout"})
    d = CascadeConfig()
    gate = section.get("gate", d.gate)
    if gate not in GATES:
        raise c.fail("cascade.gate", f"expected one of {', '.join(GATES)}, got {gate!r}")
    per_tier = c.mapping(section.get("thresholds", {}), "cascade.thresholds", set(tiers))
    judge_tier = section.get("judge_tier")
    if judge_tier is not None:
        c.tier(judge_tier, "cascade.judge_tier", tiers)
    on_error = section.get("on_judge_error", d.on_judge_error)
    if on_error not in ("heuristic", "fail"):
        raise c.fail("cascade.on_judge_error", f"expected heuristic or fail, got {on_error!r}")
    return CascadeConfig(
        gate=gate,
        threshold=c.number(section.get("threshold", d.threshold), "cascade.threshold", maximum=1),
        thresholds={t: c.number(v, f"cascade.thresholds.{t}", maximum=1) for t, v in per_tier.items()},
        judge_tier=judge_tier,
        judge_max_tokens=c.integer(section.get("judge_max_tokens", d.judge_max_tokens), "cascade.judge_max_tokens", minimum=1,
                                   maximum=MAX_OUTPUT_TOKENS),
        on_judge_error=on_error,
        checks=_checks(c, section.get("checks", {}), tiers),
        check_timeout=c.number(section.get("check_timeout", d.check_timeout), "cascade.check_timeout", minimum=0.001, maximum=3600),
    )


def _checks(c: Checks, value: Any, tiers: list[str]) -> dict[str, tuple[str, ...]]:
    """``cascade.checks``: per tier, a shell command or a list of them (see engine/checks.py)."""
    out = {}
    for tier, commands in c.mapping(value, "cascade.checks", set(tiers)).items():
        commands = [commands] if isinstance(commands, str) else commands
        if not isinstance(commands, list) or not commands:
            raise c.fail(f"cascade.checks.{tier}", "expected a shell command or a list of them")
        out[tier] = tuple(c.string(cmd, f"cascade.checks.{tier}[{i}]") for i, cmd in enumerate(commands))
    return out


def breaker(c: Checks, value: Any) -> BreakerConfig:
    section = c.mapping(value, "breaker", {"enabled", "failures", "window", "cooldown"})
    d = BreakerConfig()
    return BreakerConfig(
        c.boolean(section.get("enabled", d.enabled), "breaker.enabled"),
        c.integer(section.get("failures", d.failures), "breaker.failures", minimum=1, maximum=10_000),
        c.duration(section.get("window", d.window), "breaker.window"),
        c.duration(section.get("cooldown", d.cooldown), "breaker.cooldown"),
    )


def budgets(c: Checks, value: Any, tiers: list[str]) -> tuple[Budget, ...]:
    if not isinstance(value, list):
        raise c.fail("budgets", f"expected a list of budgets, got {kind(value)}")
    return tuple(_budget(c, entry, f"budgets[{i}]", tiers) for i, entry in enumerate(value))


def _budget(c: Checks, value: Any, path: str, tiers: list[str]) -> Budget:
    entry = c.mapping(value, path, {"scope", "user", "team", "period", "limit", "policy", "floor_tier"},
                      {"scope", "period", "limit"})
    scope = entry["scope"]
    if scope not in ("global", "user", "team"):
        raise c.fail(join(path, "scope"), f"expected global, user or team, got {scope!r}")
    for key in ("user", "team"):
        if key in entry and key != scope:
            raise c.fail(join(path, key), f"only a {key} budget names a {key} (this one's scope is {scope})")
    who = entry.get(scope)
    if who is not None:
        who = c.string(who, join(path, scope))
    period = entry["period"]
    if period not in ("day", "month"):
        raise c.fail(join(path, "period"), f"expected day or month, got {period!r}")
    amount = c.usd(entry["limit"], join(path, "limit"), MAX_USD)
    policy = entry.get("policy", "downgrade")
    if policy not in ("downgrade", "block"):
        raise c.fail(join(path, "policy"), f"expected downgrade or block, got {policy!r}")
    floor = c.tier(entry.get("floor_tier", tiers[0]), join(path, "floor_tier"), tiers)
    return Budget(scope, who, period, amount, policy, floor)


def cache(c: Checks, value: Any) -> CacheConfig:
    section = c.mapping(value, "cache", {"enabled", "ttl", "scope"})
    d = CacheConfig()
    enabled = c.boolean(section.get("enabled", d.enabled), "cache.enabled")
    scope = section.get("scope", d.scope)
    if scope not in ("user", "global"):
        raise c.fail("cache.scope", f"expected user or global, got {scope!r}")
    return CacheConfig(enabled, c.duration(section.get("ttl", d.ttl), "cache.ttl"), scope)


def serve(c: Checks, value: Any) -> ServeConfig:
    section = c.mapping(value, "serve", {"keys", "max_body_bytes", "session_from_user", "sessions"})
    d = ServeConfig()
    keys = section.get("keys", [])
    if not isinstance(keys, list):
        raise c.fail("serve.keys", f"expected a list of keys, got {kind(keys)}")
    return ServeConfig(
        tuple(_serve_key(c, entry, f"serve.keys[{i}]") for i, entry in enumerate(keys)),
        c.integer(section.get("max_body_bytes", d.max_body_bytes), "serve.max_body_bytes", minimum=1,
                  maximum=1 << 30),
        c.boolean(section.get("session_from_user", d.session_from_user), "serve.session_from_user"),
        c.integer(section.get("sessions", d.sessions), "serve.sessions", minimum=1, maximum=10_000_000),
    )


def _serve_key(c: Checks, value: Any, path: str) -> ServeKey:
    entry = c.mapping(value, path, {"env", "sha256", "user", "team"})
    if ("env" in entry) == ("sha256" in entry):
        raise c.fail(path, "give env (the variable holding the key) or sha256 (the key's hash), one of them")
    digest = entry.get("sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                   and all(ch in "0123456789abcdef" for ch in digest.lower())):
        raise c.fail(join(path, "sha256"), "expected 64 hex digits (sha256 of the key)")
    env = entry.get("env")
    return ServeKey(
        env=None if env is None else c.string(env, join(path, "env")),
        sha256=None if digest is None else digest.lower(),
        user=None if "user" not in entry else c.string(entry["user"], join(path, "user")),
        team=None if "team" not in entry else c.string(entry["team"], join(path, "team")),
    )
