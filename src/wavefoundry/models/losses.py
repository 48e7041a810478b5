"""Losses shared by the waveform models.

Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN, section 2.3): at each
resolution, spectral convergence ||S_ref - S_gen||_F / ||S_ref||_F plus the L1 distance of
log magnitudes, each averaged over the resolutions.

The resolutions are FFT sizes 512, 1024 and 2048 with a Hann window as long as the FFT and a
hop of a quarter of it (128, 256, 512): the same triple at any sample rate, matching the
"multi-resolution STFT distance (FFT 512/1024/2048)" metric the project reports. (Parallel
WaveGAN's own defaults are FFT 1024/2048/512 with hops 120/240/50 and windows 600/1200/240;
pass them as `resolutions` to reproduce that paper.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (n_fft, hop_length, win_length)
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = (
    (512, 128, 512),
    (1024, 256, 1024),
    (2048, 512, 2048),
)


def stft_magnitude(
    audio: torch.Tensor, n_fft: int, hop_length: int, win_length: int
) -> torch.Tensor:
    """|STFT| of (B, T) audio as (B, frames, n_fft // 2 + 1), in float32 whatever the input.

    Zero-padded at both ends (centred frames), so clips shorter than the FFT still work.
    """
    window = torch.hann_window(win_length, device=audio.device)
    spectrum = torch.stft(
        audio.float(),
        n_fft,
        hop_length,
        win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    # The floor keeps the log and the square root's gradient finite in digital silence.
    return torch.sqrt(torch.clamp(spectrum.real**2 + spectrum.imag**2, min=1e-7)).transpose(1, 2)


def multi_resolution_stft_loss(
    generated: torch.Tensor,
    reference: torch.Tensor,
    resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral convergence, log STFT magnitude L1) between (B, T) waveforms, each the mean
    over `resolutions` of (n_fft, hop_length, win_length). Scalars; differentiable in both."""
    if generated.shape != reference.shape or generated.dim() != 2:
        raise ValueError(
            f"expected two (B, T) waveforms of one shape, got {tuple(generated.shape)} "
            f"and {tuple(reference.shape)}"
        )
    spectral_convergence = generated.new_zeros((), dtype=torch.float32)
    log_magnitude = generated.new_zeros((), dtype=torch.float32)
    for n_fft, hop_length, win_length in resolutions:
        generated_magnitude = stft_magnitude(generated, n_fft, hop_length, win_length)
        reference_magnitude = stft_magnitude(reference, n_fft, hop_length, win_length)
        spectral_convergence = spectral_convergence + torch.linalg.norm(
            reference_magnitude - generated_magnitude
        ) / torch.linalg.norm(reference_magnitude)
        log_magnitude = log_magnitude + F.l1_loss(
            torch.log(generated_magnitude), torch.log(reference_magnitude)
        )
    return spectral_convergence / len(resolutions), log_magnitude / len(resolutions)
