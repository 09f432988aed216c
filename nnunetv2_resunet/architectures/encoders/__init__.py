"""Encoders: each returns a dict of named features and publishes ``feature_names`` (shallowest first, the last is
the deepest), ``output_channels`` and ``strides``, from which every decoder derives its widths and scales."""
