"""Pure core: domain types and decisions. Imports no I/O library."""
