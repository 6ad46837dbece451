"""Long-running loops: the invoice watcher, the payment worker, the treasury worker."""
