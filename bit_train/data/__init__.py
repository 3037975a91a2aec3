"""Datasets -> metadata for the plan, and the train/eval streams the plan asks for."""
