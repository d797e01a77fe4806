"""Renderers of reports: terminal text and JSON.  No solver here."""
