"""Batched augmentation on uint8 image tensors: the pipeline, its policies, ops and lookups."""
