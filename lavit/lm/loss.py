"""Next-token loss of the multimodal LM, split by the modality of the predicted token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lavit.lm.sequences import IGNORE_INDEX
from lavit.lm.vocabulary import MultimodalVocabulary

MODALITIES = ("text", "keyframe", "motion")


@dataclass(frozen=True)
class NextTokenLoss:
    """``loss``: mean cross-entropy over every labelled target; ``per_modality[name]``: the mean over targets of that
    modality (NaN when a batch has none), ``counts[name]``: how many there were (text, keyframe, motion)."""

    loss: torch.Tensor
    per_modality: dict[str, torch.Tensor]
    counts: dict[str, int]


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, vocab: MultimodalVocabulary) -> NextTokenLoss:
    """``logits`` ``(B, L, V)`` predict position t + 1 from position t; ``labels`` ``(B, L)`` (``IGNORE_INDEX`` = no
    loss). A target's modality: keyframe = [IMG], visual codes, [/IMG]; motion = [MOV], motion codes, [/MOV]; else text.

    Raises:
        ValueError: shapes disagree, or no position carries a label (a batch with nothing to learn).
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits (B, L, V) and labels (B, L) disagree: {tuple(logits.shape)} and {tuple(labels.shape)}")
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    if not bool(valid.any()):
        raise ValueError("no labelled target in the batch (every label is IGNORE_INDEX)")
    per_token = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
    per_token = per_token * valid
    modality = vocab.modality(targets)
    loss = per_token.sum() / valid.sum()
    per_modality, counts = {}, {}
    for index, name in enumerate(MODALITIES):
        mask = valid & (modality == index)
        n = int(mask.sum())
        counts[name] = n
        per_modality[name] = (per_token * mask).sum() / n if n else per_token.new_tensor(float("nan"))
    return NextTokenLoss(loss, per_modality, counts)
