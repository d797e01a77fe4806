"""The schedule IR: plain frozen data, no solver."""

from .builder import RankBuilder, ScheduleBuilder
from .compact import compact_bytes, save_compact, schedule_from_compact
from .fileformat import FORMAT_VERSION, dumps, load, loads, save, schedule_from_dict, schedule_to_dict
from .ops import COLLECTIVES, HOST_STREAM, Access, Kind, Meta, Op
from .region import FULL, Interval, Region
from .schedule import Buffer, InitValue, Schedule

__all__ = [
    "COLLECTIVES", "FORMAT_VERSION", "FULL", "HOST_STREAM", "Access", "Buffer", "InitValue", "Interval", "Kind",
    "Meta", "Op", "RankBuilder", "Region", "Schedule", "ScheduleBuilder", "dumps", "load", "loads",
    "save", "save_compact", "compact_bytes", "schedule_from_compact", "schedule_from_dict", "schedule_to_dict",
]
