"""Reports over the ledger: what was spent and saved (costs, drift), how providers are doing
(health), why a request went where it went (explain), what people said (feedback), training
labels (labels), re-routing past traffic (replay), scoring classifiers (evaluate) and the
significance tests behind variant comparisons (stats).

Import the module you need (``from router_cli.reports.costs import cost_report``); this
package imports nothing, so that loading one report does not load the others.
"""
