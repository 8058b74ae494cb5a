"""Random weights that behave like trained ones where the tests need it."""

import torch


def calibrate_batchnorm(net: torch.nn.Module, batch, steps: int = 2) -> None:
    """Set BatchNorm running statistics from a few random batches.

    With default running statistics (mean 0, variance 1) a randomly initialised deep network shrinks
    its activations layer after layer until the features are constant (FID ~1e-15, IS = 1), and a
    parity test on such features could not fail. Calibrated statistics keep activations O(1).
    """
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(batch())
    net.eval()
