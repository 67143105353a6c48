"""CTC head."""

from __future__ import annotations

from torch import Tensor, nn


class CTCHead(nn.Module):
    """A 1x1 convolution to classes, then log-softmax: ``[B, D, T] -> [B, T, C]``."""

    def __init__(self, feat_in: int, num_classes: int) -> None:
        super().__init__()
        self.decoder_layers = nn.Sequential(nn.Conv1d(feat_in, num_classes, kernel_size=1))

    def forward(self, encoded: Tensor) -> Tensor:
        logits = self.decoder_layers(encoded).transpose(1, 2)
        return nn.functional.log_softmax(logits, dim=-1)
