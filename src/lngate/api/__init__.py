"""HTTP edge: the user API, its authentication and the one error mapping."""
