"""Convolutions that run over channels-last memory on a CPU: a speed trick kept beside the
model files that use it (models/hifigan.py), not inside them.

Each is a drop-in nn.Conv1d / nn.ConvTranspose1d: the same parameters, state_dict keys, shapes
and results (tests/unit/test_hifigan.py compares them with torch's own and the whole generator
with a plain F.conv1d build); other devices take torch's own path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsLastConv1d(nn.Conv1d):
    """nn.Conv1d that on a CPU runs as a 1 x k Conv2d over channels-last memory.

    oneDNN reorders a (B, C, T) tensor on every call and runs the generator's narrow, long
    convolutions 2-4x slower than over (B, T, C) memory. Parameters, shapes and results are
    nn.Conv1d's; the output keeps (B, T, C) strides, and so does everything computed from it,
    so only the first layer pays for a reorder. Other devices take nn.Conv1d's own path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            dilation=(1, self.dilation[0]),
            groups=self.groups,
        )
        return y.squeeze(2)


class ChannelsLastConvTranspose1d(nn.ConvTranspose1d):
    """nn.ConvTranspose1d that on a CPU runs over channels-last memory, as ChannelsLastConv1d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = F.conv_transpose2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            output_padding=(0, self.output_padding[0]),
            groups=self.groups,
            dilation=(1, self.dilation[0]),
        )
        return y.squeeze(2)
