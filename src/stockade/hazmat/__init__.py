"""Unguarded pieces. DANGER.

Everything in ``stockade.hazmat`` runs without the guard pipeline: no policy
decision, no flow check, no audit record. It exists for tests, benchmarks and
integrators who build their own safe layer on top. You MUST NOT hand anything
from here to an agent. Use :class:`stockade.Guard` and the tools in
:mod:`stockade.tools` instead.
"""
