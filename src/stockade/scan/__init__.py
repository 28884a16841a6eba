"""stockade.scan: see docs/design.md."""
