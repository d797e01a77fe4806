"""Importers: other tools' schedules and traces turned into syncproof schedules.
No solver import here."""
