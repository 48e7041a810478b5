"""Fast WaveNet generation compiled for the CPU: the speed tricks beside models/wavenet.py.

Step for step this is the paper file's Fast WaveNet (Paine et al. 2016, "Fast Wavenet
Generation Algorithm"): each layer keeps a queue of its past inputs, so a sample costs O(layers).
What differs is how it runs. The eager step is ~150 torch operations per sample, each ~6 us of
dispatch for a few thousand multiply-adds; here the whole loop over samples and layers is one
numba-compiled function over float32 numpy views of the weights, laid out once per call:

- each layer's queue is a ring of (kernel_size - 1) * dilation + 1 inputs, zero before the first
  sample (the causal zero padding of `WaveNet.forward` at every layer's input);
- the matrix products run along contiguous rows of outputs (the loops LLVM vectorises), four
  input channels and two streams at a time: each load of a weight vector serves eight
  multiply-adds, each load and store of an output vector four;
- the streams of a batch are independent, so they are split into up to `torch.get_num_threads()`
  groups run on threads at once (the compiled function releases the GIL).

Sampling is by inverse CDF of softmax(logits / temperature) on uniforms drawn up front with
torch (`draw_uniforms`), the same rule as `inverse_cdf_sample` on the torch paths, so a seeded
`torch.Generator` gives the same audio whichever path runs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import torch

# Steps per call of the compiled loop: the local conditioning is projected a chunk at a time.
CHUNK = 256


def draw_uniforms(
    batch: int, n_samples: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(B, n_samples) uniforms in [0, 1), one per sample to draw, from `generator` (or torch's
    default generator) on its own device, then moved to `device`."""
    source = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(batch, n_samples, generator=generator, device=source).to(device)


def inverse_cdf_sample(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(B, classes) logits and (B,) uniforms -> (B,) classes: the first class whose cumulative
    softmax(logits / temperature) exceeds u times the total; temperature 0 is the argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
    targets = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    drawn = torch.searchsorted(cdf, targets.contiguous(), right=True).squeeze(-1)
    return drawn.clamp_(max=logits.shape[-1] - 1)


@dataclass(frozen=True)
class FastWaveNetWeights:
    """A WaveNet's weights as float32 matrices (inputs x outputs), laid out for the kernel."""

    embedding: np.ndarray  # (classes, residual)
    dilations: np.ndarray  # (layers,) int64
    taps: np.ndarray  # (layers, kernel_size, residual, 2 dc): tap j reads t - (k - 1 - j) d
    residual: np.ndarray  # (layers, dc, residual)
    residual_bias: np.ndarray  # (layers, residual)
    skip: np.ndarray  # (layers, dc, skip)
    skip_bias: np.ndarray  # (skip,): every layer's skip bias, summed
    output1: np.ndarray  # (skip, skip)
    output1_bias: np.ndarray
    output2: np.ndarray  # (skip, classes)
    output2_bias: np.ndarray

    @classmethod
    def of(cls, net) -> FastWaveNetWeights:
        """From a `WaveNet` (models/wavenet.py) on the CPU."""

        def matrix(conv) -> torch.Tensor:  # a 1x1 convolution as (in, out)
            return conv.weight[:, :, 0].t()

        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().float().numpy())

        layers = net.layers
        return cls(
            embedding=array(net.input_embedding.weight),
            dilations=np.array([layer.dilation for layer in layers], dtype=np.int64),
            taps=array(
                torch.stack([layer.dilated_conv.weight.permute(2, 1, 0) for layer in layers])
            ),
            residual=array(torch.stack([matrix(layer.residual_conv) for layer in layers])),
            residual_bias=array(torch.stack([layer.residual_conv.bias for layer in layers])),
            skip=array(torch.stack([matrix(layer.skip_conv) for layer in layers])),
            skip_bias=array(sum(layer.skip_conv.bias for layer in layers)),
            output1=array(matrix(net.output_conv1)),
            output1_bias=array(net.output_conv1.bias),
            output2=array(matrix(net.output_conv2)),
            output2_bias=array(net.output_conv2.bias),
        )


def generate(
    weights: FastWaveNetWeights,
    n_samples: int,
    gate_bias: Callable[[int, int], torch.Tensor],
    first_inputs: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    teacher_forcing: torch.Tensor | None = None,
    return_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fast WaveNet on the CPU, as `WaveNet.generate`: (B, n_samples) classes, and the logits
    (B, classes, n_samples) with `return_logits`.

    gate_bias(t, steps): every layer's gate bias (dilated convolution bias + conditioning) for
    steps t .. t + steps - 1, (steps, layers, B, 2 dc), or (1, layers, B, 2 dc) when it is the
    same at every step. first_inputs: (B,) the class fed at step 0; uniforms: (B, n_samples)
    from `draw_uniforms`; teacher_forcing: (B, >= n_samples) classes fed instead of the draws.
    """
    w = weights
    batch = len(first_inputs)
    classes = w.output2.shape[1]
    residual = w.embedding.shape[1]
    k = w.taps.shape[1]
    sizes = (k - 1) * w.dilations + 1  # each layer's ring of past inputs
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    queue = np.zeros((int(sizes.sum()), batch, residual), dtype=np.float32)
    inputs = first_inputs.to(torch.int64).numpy().copy()
    teacher = (
        np.ascontiguousarray(teacher_forcing[:, :n_samples].to(torch.int64).numpy())
        if teacher_forcing is not None
        else np.zeros((batch, 0), dtype=np.int64)
    )
    u = np.ascontiguousarray(uniforms.float().numpy())
    samples = np.empty((batch, n_samples), dtype=np.int64)
    logits = np.empty((batch, classes, n_samples if return_logits else 0), dtype=np.float32)
    groups = max(1, min(batch, torch.get_num_threads()))
    bounds = [(g * batch // groups, (g + 1) * batch // groups) for g in range(groups)]

    def run(t: int, steps: int, bias: np.ndarray, b0: int, b1: int) -> None:
        _generate_steps(
            t, steps, bias, inputs, teacher, u, np.float32(temperature), samples, logits,
            queue, offsets, sizes, w.dilations, w.embedding, w.taps, w.residual,
            w.residual_bias, w.skip, w.skip_bias, w.output1, w.output1_bias, w.output2,
            w.output2_bias, b0, b1,
        )  # fmt: skip

    with ThreadPoolExecutor(groups) if groups > 1 else _Inline() as pool:
        for t in range(0, n_samples, CHUNK):
            steps = min(CHUNK, n_samples - t)
            bias = np.ascontiguousarray(gate_bias(t, steps).float().numpy())
            for done in [pool.submit(run, t, steps, bias, b0, b1) for b0, b1 in bounds]:
                done.result()
    return (
        torch.from_numpy(samples),
        torch.from_numpy(logits) if return_logits else None,
    )


class _Inline:
    """A pool of no threads: `submit` runs the call at once."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args):
        fn(*args)
        return self

    def result(self) -> None:
        return None


def _jit(fn):
    """Compiled once per process: loaded from numba's on-disk cache when a writable cache
    directory exists (next to this file, or the user's), else compiled in memory."""
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError:  # no writable cache directory (a read-only install, no home)
        return numba.njit(nogil=True, error_model="numpy")(fn)


@_jit
def _add_matmul(out, x, w):
    """out (B, n) += x (B, m) @ w (m, n), four rows of w at a time: each pass along a row of out
    (the contiguous loop LLVM vectorises) does four multiply-adds per load and store of it;
    streams in pairs, so each weight vector loaded serves two."""
    m = w.shape[0]
    n = w.shape[1]
    streams = out.shape[0]
    i = 0
    while i + 2 <= streams:
        _add_matmul_pair(out[i], out[i + 1], x[i], x[i + 1], w, m, n)
        i += 2
    if i < streams:
        out_i = out[i]
        x_i = x[i]
        r = 0
        while r + 4 <= m:
            x0, x1, x2, x3 = x_i[r], x_i[r + 1], x_i[r + 2], x_i[r + 3]
            w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
            for o in range(n):
                out_i[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o]
            r += 4
        while r < m:
            x0 = x_i[r]
            w0 = w[r]
            for o in range(n):
                out_i[o] += x0 * w0[o]
            r += 1


@_jit
def _add_matmul_pair(a, b, xa, xb, w, m, n):
    r = 0
    while r + 4 <= m:
        a0, a1, a2, a3 = xa[r], xa[r + 1], xa[r + 2], xa[r + 3]
        b0, b1, b2, b3 = xb[r], xb[r + 1], xb[r + 2], xb[r + 3]
        w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
        for o in range(n):
            u0, u1, u2, u3 = w0[o], w1[o], w2[o], w3[o]
            a[o] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
            b[o] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
        r += 4
    while r < m:
        for o in range(n):
            a[o] += xa[r] * w[r, o]
            b[o] += xb[r] * w[r, o]
        r += 1


@_jit
def _tanh(x):
    """tanh as a rational function of x clamped to +-7.9 (float32 to a few ulp; the
    approximation Eigen and PyTorch vectorise): no library call, so loops of it vectorise."""
    x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@_jit
def _generate_steps(
    t0, steps, bias, inputs, teacher, uniforms, temperature, samples, logits_out,
    queue, offsets, sizes, dilations, embedding, taps, residual, residual_bias,
    skip, skip_bias, output1, output1_bias, output2, output2_bias, b0, b1,
):  # fmt: skip
    """Steps t0 .. t0 + steps - 1 of streams b0 .. b1 - 1 (see `generate`)."""
    n_layers, k, channels, gate_channels = taps.shape
    dc = gate_channels // 2
    n_skip = skip_bias.shape[0]
    classes = output2_bias.shape[0]
    nb = b1 - b0
    half = np.float32(0.5)
    zero = np.float32(0.0)
    z = np.empty((nb, gate_channels), dtype=np.float32)
    gate = np.empty((nb, dc), dtype=np.float32)
    skips = np.empty((nb, n_skip), dtype=np.float32)
    hidden = np.empty((nb, n_skip), dtype=np.float32)
    logits = np.empty((nb, classes), dtype=np.float32)
    exps = np.empty(classes, dtype=np.float32)
    forced = teacher.shape[1] > 0
    keep_logits = logits_out.shape[2] > 0
    for s in range(steps):
        t = t0 + s
        row = s if bias.shape[0] > 1 else 0
        # The first layer's input joins its queue: the embedding of the input class.
        here = offsets[0] + t % sizes[0]
        for b in range(b0, b1):
            c = teacher[b, t] if forced else inputs[b]
            queue[here, b, :] = embedding[c]
        for i in range(nb):
            skips[i, :] = skip_bias
        for layer in range(n_layers):
            d = dilations[layer]
            size = sizes[layer]
            here = offsets[layer] + t % size
            # Dilated convolution: z = bias + sum over taps of W_j x(t - (k - 1 - j) d).
            for i in range(nb):
                z[i, :] = bias[row, layer, b0 + i]
            for j in range(k):
                slot = offsets[layer] + (t - (k - 1 - j) * d + size) % size
                _add_matmul(z, queue[slot, b0:b1], taps[layer, j])
            # Gated activation unit: tanh(filter) * sigmoid(gate), sigmoid(x) = (1 + tanh(x/2)) / 2.
            for i in range(nb):
                zi = z[i]
                gi = gate[i]
                for c in range(dc):
                    gi[c] = _tanh(zi[c]) * (half + half * _tanh(half * zi[dc + c]))
            # Skip connection, summed over layers.
            _add_matmul(skips, gate, skip[layer])
            # Residual connection: the next layer's input joins its queue.
            if layer + 1 < n_layers:
                following = offsets[layer + 1] + t % sizes[layer + 1]
                for i in range(nb):
                    queue[following, b0 + i, :] = queue[here, b0 + i, :] + residual_bias[layer]
                _add_matmul(queue[following, b0:b1], gate, residual[layer])
        # Output: relu, 1x1, relu, 1x1.
        for i in range(nb):
            hidden[i, :] = output1_bias
            logits[i, :] = output2_bias
        _add_matmul(hidden, np.maximum(skips, zero), output1)
        _add_matmul(logits, np.maximum(hidden, zero), output2)
        # Draw each stream's next sample by inverse CDF (as `inverse_cdf_sample`).
        for i in range(nb):
            b = b0 + i
            li = logits[i]
            best = 0
            for o in range(1, classes):
                if li[o] > li[best]:
                    best = o
            if temperature > zero:
                total = zero
                for o in range(classes):
                    total += np.exp(li[o] / temperature - li[best] / temperature)
                    exps[o] = total
                target = uniforms[b, t] * total
                drawn = classes - 1
                for o in range(classes):
                    if exps[o] > target:
                        drawn = o
                        break
            else:
                drawn = best
            samples[b, t] = drawn
            inputs[b] = drawn
            if keep_logits:
                for o in range(classes):
                    logits_out[b, o, t] = li[o]
