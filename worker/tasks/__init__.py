"""Tasks that ship with coroq."""
