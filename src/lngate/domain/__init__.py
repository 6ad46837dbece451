"""Pure domain logic: money, ledger rules, lifecycles, limits and the typed errors. No I/O."""
