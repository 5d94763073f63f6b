"""Pretrained models shipped inside the package: names, model cards and loading."""
