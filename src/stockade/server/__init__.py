"""stockade.server: see docs/design.md."""
