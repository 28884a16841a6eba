"""stockade.integrations: see docs/design.md."""
