"""How money is compared: the business's one rounding rule, used by the model's checks,
reconciliation and the sandbox's planted discrepancies alike."""

MONEY_TOLERANCE = 0.01  # USD, absolute: a difference of one cent or less is rounding, not a mismatch
