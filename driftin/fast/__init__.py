"""The fast sampling path behind generate(fast=True): bf16 weights, channels_last, torch.compile, CUDA graphs.

generate() calls fast_generate(net, noise, method, steps, y, guidance, eta, seeds, callback); it returns
the same x in [-1, 1] (float32 [n, 3, H, W], not yet clamped) as the eager path, for the same seeds, up
to bf16 rounding. On CUDA:

* the model is copied once per (model, options, device): cast to bf16, channels_last, eval mode; the
  copy is refreshed in place when the original's weights change (checked through the parameters'
  version counters), so captured graphs and compiled code stay valid;
* drift is one captured CUDA graph per (model, batch size, labels on/off): static input buffers for
  the noise, labels and the guidance input alpha; the output is cloned out of the static buffer;
* DDIM without a callback is ONE captured graph for the whole loop: per-step coefficients and
  timesteps are precomputed device tensors, the loop is unrolled at capture, eta > 0 noise is drawn
  up front (per sample, from the same generators as the eager path) into a static buffer, and the
  guidance scale is a static device scalar, so changing it needs no new graph;
* DDIM with a callback replays one captured single-step graph per step, so every frame is seen;
* the step functions (model + DDIM update, fp32 outside the network) are compiled with
  torch.compile (inductor, no inductor CUDA graphs: we capture ourselves), once per shape family;
  warm-up, autotuning and cuDNN algorithm search happen before capture.

Anything else runs the eager code: CPU / MPS tensors, an empty batch, FastOptions(enabled=False), or a build
(compile + capture) that failed – the failure is logged once and recorded in `last_info`.
If compiling fails, the graphs are captured on the eager (bf16) model instead.

How to build is a FastOptions (options.py): generate(fast=True) uses the defaults, generate(fast=FastOptions(...))
anything else; the environment is read only by the command-line tools, through FastOptions.from_env().
Modules: options.py (FastOptions), sampler.py (FastSampler and its step functions), graphs.py (graph cache,
capture, compile), fusion.py (the fused AdaGN projection); this file holds the entry points and the copy cache.

Not thread-parallel: calls are serialized by a module lock (static buffers are shared per key).
clear_cache() drops every copy and graph (e.g. after replacing parameters with load_state_dict(assign=True),
which the version check cannot see).
"""
from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict

import torch

from ..sampling import ddim_coefficients, eager_sample, step_noise  # noqa: F401 (ddim_coefficients re-exported)
from .graphs import GRAPHS, LOCK, BuildError
from .options import FastOptions
from .sampler import FastSampler, Rebuild

__all__ = ["FastOptions", "FastSampler", "BuildError", "fast_generate", "eager_generate", "get_sampler",
           "clear_cache", "cache_info", "last_info"]

log = logging.getLogger(__name__)

_SAMPLERS: "OrderedDict[tuple, FastSampler]" = OrderedDict()
MAX_SAMPLERS = 4
last_info: dict = {"path": None}
_WARNED: set = set()
# options that decide how a copy is built; the others (enabled, strict, max_graphs) act per call
_PER_CALL = {"enabled": True, "strict": False, "max_graphs": 32}


def clear_cache() -> None:
    """Drop all model copies and captured graphs (memory goes back to the caching allocator)."""
    with LOCK:
        GRAPHS.clear()
        _SAMPLERS.clear()


def cache_info() -> dict:
    with LOCK:
        return {"samplers": len(_SAMPLERS), "graphs": len(GRAPHS), "max_graphs": GRAPHS.limit,
                "keys": [k[1:] for k in GRAPHS.entries]}


def get_sampler(net, options: FastOptions | None = None, device=None) -> FastSampler:
    """The cached FastSampler of this model, options and device (made on first use); options.max_graphs
    becomes the bound of the shared graph cache."""
    options = options or FastOptions()
    device = torch.device(device) if device is not None else next(net.parameters()).device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    build = dataclasses.replace(options, **_PER_CALL)
    key = (id(net), build, device)
    with LOCK:
        GRAPHS.limit = options.max_graphs
        s = _SAMPLERS.get(key)
        if s is not None and (s.ref() is not net or not s.valid):
            GRAPHS.drop(s.uid)
            del _SAMPLERS[key]
            s = None
        if s is None:
            s = FastSampler(net, build, device)
            _SAMPLERS[key] = s
            while len(_SAMPLERS) > MAX_SAMPLERS:
                _, old = _SAMPLERS.popitem(last=False)
                GRAPHS.drop(old.uid)
        _SAMPLERS.move_to_end(key)
        while len(GRAPHS) > GRAPHS.limit:  # a smaller bound applies at once
            GRAPHS.entries.popitem(last=False)
        return s


def eager_generate(net, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, seeds=None, callback=None,
                   spacing="uniform", guidance_interval=None):
    """The reference path (what generate() does with fast=False)."""
    if method != "drift" and seeds is None and eta > 0:
        raise ValueError("seeds are needed for DDIM with eta > 0")
    noise_fn = step_noise(seeds, noise) if method != "drift" and seeds is not None else None
    return eager_sample(net, noise, method, steps, y, guidance, eta, noise_fn, callback, spacing=spacing,
                        guidance_interval=guidance_interval)


def _info(path, reason=None, sampler=None):
    global last_info
    last_info = {"path": path, "reason": reason}
    if sampler is not None:
        last_info["compile_error"] = sampler.compile_error
        last_info["fused_emb"] = sampler.fused_emb
        e = sampler.last_entry
        if e is not None:
            last_info.update(build_s=e.build_s, warmup_s=e.warmup_s, capture_s=e.capture_s)


@torch.no_grad()
def fast_generate(net, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, seeds=None, callback=None,
                  *, options: FastOptions | None = None, spacing: str = "uniform", guidance_interval=None):
    """generate()'s fast path: x [n, C, H, W] float32 (unclamped), equal to the eager path up to bf16."""
    options = options or FastOptions()
    reason = None
    if not options.enabled:
        reason = "fast path disabled (enabled=False, e.g. DRIFTIN_FAST=0)"
    elif noise.device.type != "cuda":
        reason = f"device {noise.device.type}: eager"
    elif noise.shape[0] == 0:
        reason = "empty batch"
    if reason is None:
        for _ in range(2):
            try:
                with LOCK:
                    s = get_sampler(net, options, noise.device)
                    x = s.generate(noise, method, steps, y, guidance, eta, seeds, callback, spacing, guidance_interval)
                    _info(s.path, None, s)
                    return x
            except Rebuild:
                continue  # a frozen model whose weights changed: the next get_sampler makes a new copy
            except BuildError as err:
                if options.strict:
                    raise
                reason = f"fast path failed, eager used: {err}"
                if reason not in _WARNED:
                    _WARNED.add(reason)
                    log.warning("driftin.fast: %s", reason)
                break
    _info("eager", reason)
    return eager_generate(net, noise, method, steps, y, guidance, eta, seeds, callback, spacing=spacing,
                          guidance_interval=guidance_interval)
