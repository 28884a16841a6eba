"""stockade.audit: see docs/design.md."""
