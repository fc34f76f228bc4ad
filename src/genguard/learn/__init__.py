"""Offline code: datasets, embedding cache, training, calibration, evaluation, scenes.

The runtime (Guard, pipeline, backbones, heads, defences, serving) never imports this package."""
