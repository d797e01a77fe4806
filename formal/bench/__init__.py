"""Benchmarks: schedule generators of a chosen size, the reference lower
bound, and the runner behind ``syncproof bench``.  No solver import here."""
