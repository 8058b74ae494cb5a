"""``CodebookUsageMixin``: codebook usage and perplexity over a whole validation / test epoch and all ranks."""

from __future__ import annotations

import torch

from lavit.distributed import all_reduce_sum
from lavit.tokenizers.quantizer import codebook_statistics


class CodebookUsageMixin:
    """For LightningModules with a quantiser at ``self.tokenizer.quantize``: add each validation / test batch's code
    counts to ``self._epoch_counts``; at epoch end ``{stage}/usage`` and ``{stage}/perplexity`` are logged over the
    epoch, summed over ranks."""

    _epoch_counts: torch.Tensor | None = None

    def on_validation_epoch_start(self) -> None:
        self._epoch_counts = None

    on_test_epoch_start = on_validation_epoch_start

    def _log_epoch_usage(self, stage: str) -> None:
        counts = self._epoch_counts
        if counts is None:
            counts = torch.zeros(self.tokenizer.quantize.num_codes, device=self.device)
        usage, perplexity = codebook_statistics(all_reduce_sum(counts))
        self.log_dict({f"{stage}/usage": usage, f"{stage}/perplexity": perplexity}, rank_zero_only=True)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_usage("test")
