"""Use cases. Each function is either a pure write operation (``Tx -> result``) that the
caller runs through the group-commit writer, or a read over a ``Tx`` snapshot."""
