"""ECMO risk service: calibrated probabilities with contributing factors."""

__version__ = "1.0.0"
