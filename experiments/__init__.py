"""The lab: how the library was measured (registry, tables, curves, selection rules, launchers, benchmarks)."""
