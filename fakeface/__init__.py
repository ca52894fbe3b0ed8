"""The `fakeface` command-line dispatcher (subcommands live with their code)."""
