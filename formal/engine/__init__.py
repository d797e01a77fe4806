"""The engine: the only package that imports z3."""

from .check import ENGINES, check_schedule

__all__ = ["ENGINES", "check_schedule"]
