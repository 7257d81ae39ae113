"""Experiments built on the loop: compare, study, demo, reports, the SNR probe, pretraining."""
