"""stockade.flow: see docs/design.md."""
