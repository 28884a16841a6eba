"""stockade.approvals: see docs/design.md."""
