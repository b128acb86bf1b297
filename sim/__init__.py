"""Simulation and test tooling: the real-server lab, a workload with an acked-write ledger, chaos
and benchmarks. Imports ``idc_ha``; nothing in ``idc_ha`` imports ``sim``."""
