"""Evaluate the HRNet ImageNet-1k table on a Ray cluster."""
