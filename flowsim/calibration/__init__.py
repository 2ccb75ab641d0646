"""Calibration to observed data: fit scenario inputs from extracts and compare runs with observed targets."""
