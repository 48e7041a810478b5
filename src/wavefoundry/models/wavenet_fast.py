"""Fast WaveNet generation compiled for the CPU: the speed tricks beside models/wavenet.py.

Step for step this is the paper file's Fast WaveNet (Paine et al. 2016, "Fast Wavenet
Generation Algorithm"): each layer keeps a queue of its past inputs, so a sample costs O(layers).
What differs is how it runs. The eager step is ~150 torch operations per sample, each ~6 us of
dispatch for a few thousand multiply-adds; here the whole loop over samples and layers is one
numba-compiled function over float32 numpy views of the weights, laid out once per call:

- each layer's queue is a ring of (kernel_size - 1) * dilation + 1 inputs, zero before the first
  sample (the causal zero padding of `WaveNet.forward` at every layer's input);
- every matrix product is out += x @ W.T with W stored (outputs x inputs), so each output is a
  dot product along contiguous rows of x and W, computed for a tile of four streams by four
  outputs at once: sixteen running sums that LLVM keeps in vector registers, each weight vector
  loaded serving four streams and each input vector four outputs (at four streams on one
  AVX-512 core, about twice the multiply-adds per second of loops along rows of outputs,
  which load and store the outputs at every input: bench/generate.py). Summing a dot
  product in vector lanes reorders its float32 additions (numba fastmath "reassoc"), so the
  logits match the torch paths to rounding (< 1e-4), not bit for bit;
- the dilated convolution's k taps are gathered into one input row of k x residual channels,
  and every layer's skip product is deferred: the gate outputs of all layers make one row of
  layers x dc inputs, multiplied once per step by all the skip weights side by side. Long dot
  products waste less on the sums' final reduction across vector lanes;
- the streams of a batch are independent, so they are split into up to
  `torch.get_num_threads()` groups run on threads at once (the compiled function releases the
  GIL), each with its own queues, along whole tiles of four streams, so that a stream's
  rounding, hence its samples, do not depend on the number of threads.

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
# Streams per tile of the matrix products (see `_add_matmul`).
TILE = 4


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
    """A WaveNet's weights as float32 matrices (outputs x inputs), laid out for the kernel."""

    embedding: np.ndarray  # (classes, residual)
    dilations: np.ndarray  # (layers,) int64
    taps: np.ndarray  # (layers, 2 dc, kernel_size * residual): input j * residual + c is channel
    # c of tap j, which reads t - (kernel_size - 1 - j) d
    residual: np.ndarray  # (layers, residual, dc)
    residual_bias: np.ndarray  # (layers, residual)
    skip: np.ndarray  # (skip, layers * dc): input l * dc + c is channel c of layer l's gate
    skip_bias: np.ndarray  # (skip,): every layer's skip bias, summed
    output1: np.ndarray  # (skip, skip)
    output1_bias: np.ndarray
    output2: np.ndarray  # (classes, skip)
    output2_bias: np.ndarray

    @classmethod
    def of(cls, net) -> FastWaveNetWeights:
        """From a `WaveNet` (models/wavenet.py) on the CPU."""

        def matrix(conv) -> torch.Tensor:  # a 1x1 convolution as (out, in)
            return conv.weight[:, :, 0]

        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().float().numpy())

        layers = net.layers
        return cls(
            embedding=array(net.input_embedding.weight),
            dilations=np.array([layer.dilation for layer in layers], dtype=np.int64),
            taps=array(
                torch.stack(
                    [layer.dilated_conv.weight.permute(0, 2, 1).flatten(1) for layer in layers]
                )
            ),
            residual=array(torch.stack([matrix(layer.residual_conv) for layer in layers])),
            residual_bias=array(torch.stack([layer.residual_conv.bias for layer in layers])),
            skip=array(torch.cat([matrix(layer.skip_conv) for layer in layers], dim=1)),
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
    residual = w.embedding.shape[1]
    k = w.taps.shape[2] // residual
    classes = w.output2.shape[0]
    sizes = (k - 1) * w.dilations + 1  # each layer's ring of past inputs
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    first = first_inputs.to(torch.int64).numpy()
    teacher = (
        np.ascontiguousarray(teacher_forcing[:, :n_samples].to(torch.int64).numpy())
        if teacher_forcing is not None
        else np.zeros((batch, 0), dtype=np.int64)
    )
    u = np.ascontiguousarray(uniforms.float().numpy())
    samples = np.empty((batch, n_samples), dtype=np.int64)
    logits = np.empty((batch, classes, n_samples if return_logits else 0), dtype=np.float32)
    bounds = stream_groups(batch, torch.get_num_threads())
    groups = len(bounds)
    # Each group of streams has its own queues and next inputs, in memory of its own: threads
    # writing neighbouring streams of one array would share cache lines at every layer.
    queues = [np.zeros((int(sizes.sum()), b1 - b0, residual), np.float32) for b0, b1 in bounds]
    inputs = [first[b0:b1].copy() for b0, b1 in bounds]

    def run(t: int, steps: int, bias: np.ndarray, g: int) -> None:
        b0, b1 = bounds[g]
        _generate_steps(
            t, steps, bias, inputs[g], teacher, u, np.float32(temperature), samples, logits,
            queues[g], offsets, sizes, w.dilations, w.embedding, w.taps, w.residual,
            w.residual_bias, w.skip, w.skip_bias, w.output1, w.output1_bias, w.output2,
            w.output2_bias, b0, b1,
        )  # fmt: skip

    with ThreadPoolExecutor(groups) if groups > 1 else _Inline() as pool:
        for t in range(0, n_samples, CHUNK):
            steps = min(CHUNK, n_samples - t)
            bias = np.ascontiguousarray(gate_bias(t, steps).float().numpy())
            for done in [pool.submit(run, t, steps, bias, g) for g in range(groups)]:
                done.result()
    return (
        torch.from_numpy(samples),
        torch.from_numpy(logits) if return_logits else None,
    )


def stream_groups(batch: int, threads: int) -> list[tuple[int, int]]:
    """Streams 0 .. batch - 1 split into up to `threads` contiguous groups (b0, b1) of about
    equal size, cut only between the kernel's tiles: whole blocks of `TILE` streams, then the
    rest one at a time (as `_add_matmul` tiles them), so each stream is computed the same way
    whatever the number of threads."""
    tiled = batch - batch % TILE
    edges = [*range(0, tiled, TILE), *range(tiled, batch + 1)]
    groups = max(1, min(threads, len(edges) - 1))
    cuts = [0]
    for g in range(1, groups):
        cut = min(edges, key=lambda e: abs(e - g * batch / groups))
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(batch)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


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


def _jit_reassoc(fn):
    """As `_jit`, and float additions may be reordered, so sums vectorise (fastmath "reassoc")."""
    options = dict(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:
        return numba.njit(**options)(fn)


@_jit_reassoc
def _add_matmul(out, x, w):
    """out (B, n) += x (B, m) @ w.T, w (n, m): in tiles of `TILE` (4) streams by 4 outputs, then
    the remaining streams one at a time (by 4 outputs), then the remaining outputs one at a time.
    Each tile is 16 dot products along contiguous rows of x and w (see `_tile`)."""
    streams = x.shape[0]
    n = w.shape[0]
    s = 0
    while s + 4 <= streams:
        o = 0
        while o + 4 <= n:
            _tile(out, x, w, s, o)
            o += 4
        while o < n:
            for i in range(s, s + 4):
                out[i, o] += _dot(x[i], w[o])
            o += 1
        s += 4
    while s < streams:
        o = 0
        while o + 4 <= n:
            _tile_one_stream(out, x, w, s, o)
            o += 4
        while o < n:
            out[s, o] += _dot(x[s], w[o])
            o += 1
        s += 1


@_jit_reassoc
def _tile(out, x, w, s, o):
    """out[s:s+4, o:o+4] += x[s:s+4] @ w[o:o+4].T: per input, 4 input and 4 weight loads serve
    16 multiply-adds, summed in vector lanes (the loop over inputs is the one vectorised)."""
    x0, x1, x2, x3 = x[s], x[s + 1], x[s + 2], x[s + 3]
    w0, w1, w2, w3 = w[o], w[o + 1], w[o + 2], w[o + 3]
    zero = np.float32(0.0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
    c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = zero
    for r in range(x.shape[1]):
        p, q, u, v = x0[r], x1[r], x2[r], x3[r]
        e, f, g, h = w0[r], w1[r], w2[r], w3[r]
        a0 += p * e
        a1 += p * f
        a2 += p * g
        a3 += p * h
        b0 += q * e
        b1 += q * f
        b2 += q * g
        b3 += q * h
        c0 += u * e
        c1 += u * f
        c2 += u * g
        c3 += u * h
        d0 += v * e
        d1 += v * f
        d2 += v * g
        d3 += v * h
    out[s, o] += a0
    out[s, o + 1] += a1
    out[s, o + 2] += a2
    out[s, o + 3] += a3
    out[s + 1, o] += b0
    out[s + 1, o + 1] += b1
    out[s + 1, o + 2] += b2
    out[s + 1, o + 3] += b3
    out[s + 2, o] += c0
    out[s + 2, o + 1] += c1
    out[s + 2, o + 2] += c2
    out[s + 2, o + 3] += c3
    out[s + 3, o] += d0
    out[s + 3, o + 1] += d1
    out[s + 3, o + 2] += d2
    out[s + 3, o + 3] += d3


@_jit_reassoc
def _tile_one_stream(out, x, w, s, o):
    """out[s, o:o+4] += x[s] @ w[o:o+4].T: each input loaded serves 4 multiply-adds."""
    xs = x[s]
    w0, w1, w2, w3 = w[o], w[o + 1], w[o + 2], w[o + 3]
    zero = np.float32(0.0)
    a0 = a1 = a2 = a3 = zero
    for r in range(x.shape[1]):
        p = xs[r]
        a0 += p * w0[r]
        a1 += p * w1[r]
        a2 += p * w2[r]
        a3 += p * w3[r]
    out[s, o] += a0
    out[s, o + 1] += a1
    out[s, o + 2] += a2
    out[s, o + 3] += a3


@_jit_reassoc
def _dot(x, w):
    """x (m,) . w (m,)."""
    total = np.float32(0.0)
    for r in range(x.shape[0]):
        total += x[r] * w[r]
    return total


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
    """Steps t0 .. t0 + steps - 1 of streams b0 .. b1 - 1 (see `generate`): `inputs` and
    `queue` are the group's own (index i is stream b0 + i), the other arrays the batch's."""
    n_layers, gate_channels, k_channels = taps.shape
    channels = embedding.shape[1]
    k = k_channels // channels
    dc = gate_channels // 2
    n_skip = skip_bias.shape[0]
    classes = output2_bias.shape[0]
    nb = b1 - b0
    half = np.float32(0.5)
    zero = np.float32(0.0)
    taps_in = np.empty((nb, k_channels), dtype=np.float32)
    z = np.empty((nb, gate_channels), dtype=np.float32)
    gate = np.empty((nb, dc), dtype=np.float32)
    gates = np.empty((nb, n_layers * dc), dtype=np.float32)
    skips = np.empty((nb, n_skip), dtype=np.float32)
    hidden = np.empty((nb, n_skip), dtype=np.float32)
    rectified = np.empty((nb, n_skip), dtype=np.float32)  # relu of skips, then of hidden
    logits = np.empty((nb, classes), dtype=np.float32)
    exps = np.empty(classes, dtype=np.float32)
    forced = teacher.shape[1] > 0
    keep_logits = logits_out.shape[2] > 0
    for s in range(steps):
        t = t0 + s
        row = s if bias.shape[0] > 1 else 0
        # The first layer's input joins its queue: the embedding of the input class.
        here = offsets[0] + t % sizes[0]
        for i in range(nb):
            c = teacher[b0 + i, t] if forced else inputs[i]
            queue[here, i, :] = embedding[c]
        for layer in range(n_layers):
            d = dilations[layer]
            size = sizes[layer]
            here = offsets[layer] + t % size
            # Dilated convolution: z = bias + W [x(t - (k - 1) d), ..., x(t - d), x(t)].
            for j in range(k):
                slot = offsets[layer] + (t - (k - 1 - j) * d + size) % size
                for i in range(nb):
                    taps_in[i, j * channels : (j + 1) * channels] = queue[slot, i]
            for i in range(nb):
                z[i, :] = bias[row, layer, b0 + i]
            _add_matmul(z, taps_in, taps[layer])
            # Gated activation unit: tanh(filter) * sigmoid(gate), sigmoid(x) = (1 + tanh(x/2)) / 2.
            for i in range(nb):
                zi = z[i]
                gi = gate[i]
                for c in range(dc):
                    gi[c] = _tanh(zi[c]) * (half + half * _tanh(half * zi[dc + c]))
                gates[i, layer * dc : (layer + 1) * dc] = gi
            # Residual connection: the next layer's input joins its queue.
            if layer + 1 < n_layers:
                following = offsets[layer + 1] + t % sizes[layer + 1]
                for i in range(nb):
                    queue[following, i, :] = queue[here, i, :] + residual_bias[layer]
                _add_matmul(queue[following], gate, residual[layer])
        # Skip connections, summed over layers: one product of every layer's gate outputs.
        for i in range(nb):
            skips[i, :] = skip_bias
        _add_matmul(skips, gates, skip)
        # Output: relu, 1x1, relu, 1x1.
        for i in range(nb):
            hidden[i, :] = output1_bias
            logits[i, :] = output2_bias
        np.maximum(skips, zero, rectified)
        _add_matmul(hidden, rectified, output1)
        np.maximum(hidden, zero, rectified)
        _add_matmul(logits, rectified, output2)
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
            inputs[i] = drawn
            if keep_logits:
                for o in range(classes):
                    logits_out[b, o, t] = li[o]
