"""Decoders, each built from what an encoder publishes (``feature_names``, ``output_channels``, ``strides``) plus
its own widths; each has a plain ``deep_supervision`` flag (every head always built) and ``output_strides``."""
