"""Names and street addresses: an optional scanner on top of Microsoft Presidio.

Finding people's names and addresses needs a language model, which the core
does not ship. Install the extra and a spaCy model, then switch it on in the
policy (``scan: {pii: {names: true}}``)::

    pip install 'stockade[pii-names]'
    python -m spacy download en_core_web_lg

Findings have the kinds ``name`` and ``address`` and are masked like other PII
(default: pseudonyms ``<NAME_1>``).
"""

from __future__ import annotations

from typing import Any

from stockade.errors import ConfigurationError, ScanError
from stockade.scan._base import Hit

__all__ = ["NameScanner"]

_ENTITIES = {"PERSON": "name", "LOCATION": "address"}


class NameScanner:
    """Presidio's analyzer for names and locations; built once, called many times."""

    def __init__(self, language: str = "en", min_score: float = 0.6) -> None:
        try:
            from presidio_analyzer import AnalyzerEngine
        except ImportError as exc:
            raise ConfigurationError(
                "names and addresses need the pii-names extra: "
                "pip install 'stockade[pii-names]' and a spaCy model"
            ) from exc
        try:
            self._engine: Any = AnalyzerEngine()
        except Exception as exc:  # spaCy model missing and the like
            raise ConfigurationError(
                f"the presidio analyzer could not start ({type(exc).__name__}); "
                "is a spaCy model installed?"
            ) from exc
        self.language = language
        self.min_score = min_score

    def scan(self, text: str) -> list[Hit]:
        """Names and addresses in ``text``."""
        try:
            results = self._engine.analyze(
                text=text, entities=list(_ENTITIES), language=self.language
            )
        except Exception as exc:
            raise ScanError(f"the names scanner failed ({type(exc).__name__})") from exc
        return [
            Hit("pii", _ENTITIES[r.entity_type], r.start, r.end, float(r.score), "presidio")
            for r in results
            if r.entity_type in _ENTITIES and r.score >= self.min_score
        ]
