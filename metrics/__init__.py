"""Evaluation metrics (FVD, KVD, CLIPSIM, FID, IS) as torchmetrics Metrics."""
