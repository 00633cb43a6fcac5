"""What limits and shapes a request besides its classifier: budgets, circuit breakers, the
response cache, provider pauses and A/B experiments.

The modules decide; the state they share across processes lives in the ledger store
(:class:`router_cli.ledger.LedgerStore`). Import the modules themselves
(``from router_cli.policy.budgets import BudgetGuard``): this face imports nothing.
"""
