"""Marketplace simulator: catalog, users, requests, a legacy engine and a click model."""

from shoprank.data.simulator.run import TRUTH_DIR, Simulation, simulate, summarize, write_simulation

__all__ = ["TRUTH_DIR", "Simulation", "simulate", "summarize", "write_simulation"]
