"""Python side of libdeformer: the model definition, the exporter and reference scripts (torch only)."""
