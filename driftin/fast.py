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

Anything else runs the eager code: CPU / MPS tensors, an empty batch, DRIFTIN_FAST=0, or a build
(compile + capture) that failed – the failure is logged once and recorded in `last_info`.
If compiling fails, the graphs are captured on the eager (bf16) model instead.

Environment (read at every call):
  DRIFTIN_FAST=0              always use the eager path
  DRIFTIN_COMPILE=0           no torch.compile: CUDA graphs of the eager bf16 model
  DRIFTIN_COMPILE_MODE        "default" (default) | "max-autotune-no-cudagraphs" ("max-autotune" is
                              taken as the no-cudagraphs variant: the graphs here are our own)
  DRIFTIN_COMPILE_DYNAMIC     unset: torch's automatic dynamic batch | 0: one compile per batch size | 1
  DRIFTIN_COMPILE_BACKEND     torch.compile backend (default "inductor")
  DRIFTIN_CUDA_GRAPHS=0       compiled model, no CUDA graphs
  DRIFTIN_CHANNELS_LAST       1 | 0 (default: on when compiling)
  DRIFTIN_FAST_DTYPE          bf16 (default) | fp16 | fp32
  DRIFTIN_FREEZE=1            inductor freezing (weights become constants; weight changes recompile)
  DRIFTIN_FUSE_EMB=0          keep one small GEMM per residual block for the AdaGN scale/shift (by
                              default the copy computes all of them with one GEMM after embed())
  DRIFTIN_FAST_CACHE          max captured graphs kept (default 32, least recently used dropped)
  DRIFTIN_FAST_STRICT=1       raise build failures instead of falling back to eager

Not thread-parallel: calls are serialized by a module lock (static buffers are shared per key).
clear_cache() drops every copy and graph (e.g. after replacing parameters with load_state_dict(assign=True),
which the version check cannot see).
"""
from __future__ import annotations

import copy
import itertools
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .sampling import cfg_mix, ddim_coefficients, ddim_update, eager_sample, predraw_noise, step_noise

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_MODES = {"default": None, "max-autotune": "max-autotune-no-cudagraphs",
          "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs"}


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _flag(name: str, default: bool) -> bool:
    v = _env(name).lower()
    return default if v == "" else v not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class FastOptions:
    dtype: str = "bf16"  # "bf16" | "fp16" | "fp32"
    channels_last: bool | None = None  # None: on when compiling
    compile: bool = True
    mode: str = "default"  # "default" | "max-autotune-no-cudagraphs"
    dynamic: bool | None = None  # torch.compile(dynamic=...)
    backend: str = "inductor"
    graphs: bool = True  # CUDA graphs (CUDA only)
    freezing: bool = False
    fuse_emb: bool = True  # one GEMM for all AdaGN projections (on the private copy; self-checked)

    def __post_init__(self):
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.mode not in _MODES:
            raise ValueError(f"compile mode must be one of {sorted(_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "mode", "default" if _MODES[self.mode] is None else _MODES[self.mode])

    @classmethod
    def from_env(cls) -> "FastOptions":
        dyn = _env("DRIFTIN_COMPILE_DYNAMIC").lower()
        cl = _env("DRIFTIN_CHANNELS_LAST").lower()
        return cls(
            dtype=_env("DRIFTIN_FAST_DTYPE", "bf16") or "bf16",
            channels_last=None if cl in ("", "auto") else cl not in ("0", "false", "no", "off"),
            compile=_flag("DRIFTIN_COMPILE", True),
            mode=_env("DRIFTIN_COMPILE_MODE", "default") or "default",
            dynamic=None if dyn in ("", "auto") else dyn not in ("0", "false", "no", "off"),
            backend=_env("DRIFTIN_COMPILE_BACKEND", "inductor") or "inductor",
            graphs=_flag("DRIFTIN_CUDA_GRAPHS", True),
            freezing=_flag("DRIFTIN_FREEZE", False),
            fuse_emb=_flag("DRIFTIN_FUSE_EMB", True),
        )

    @property
    def use_channels_last(self) -> bool:
        return self.compile if self.channels_last is None else self.channels_last


# ----------------------------------------------------------------------------------------------
# module state: bounded caches, one lock, info about the last call

_LOCK = threading.RLock()
_SAMPLERS: "OrderedDict[tuple, FastSampler]" = OrderedDict()
_GRAPHS: "OrderedDict[tuple, _Entry]" = OrderedDict()
_POOLS: dict[int, object] = {}
_UIDS = itertools.count()
MAX_SAMPLERS = 4
last_info: dict = {"path": None}
_WARNED: set = set()


def _max_graphs() -> int:
    try:
        return max(1, int(_env("DRIFTIN_FAST_CACHE", "32") or 32))
    except ValueError:
        return 32


def clear_cache() -> None:
    """Drop all model copies and captured graphs (memory goes back to the caching allocator)."""
    with _LOCK:
        _GRAPHS.clear()
        _SAMPLERS.clear()


def cache_info() -> dict:
    with _LOCK:
        return {"samplers": len(_SAMPLERS), "graphs": len(_GRAPHS), "max_graphs": _max_graphs(),
                "keys": [k[1:] for k in _GRAPHS]}


def _graph_get(key):
    e = _GRAPHS.get(key)
    if e is not None:
        _GRAPHS.move_to_end(key)
    return e


def _graph_put(key, entry) -> None:
    _GRAPHS[key] = entry
    _GRAPHS.move_to_end(key)
    while len(_GRAPHS) > _max_graphs():
        _GRAPHS.popitem(last=False)


def _drop_sampler_graphs(uid: int) -> None:
    for k in [k for k in _GRAPHS if k[0] == uid]:
        del _GRAPHS[k]


def get_sampler(net, options: FastOptions | None = None, device=None) -> "FastSampler":
    """The cached FastSampler of this model, options and device (made on first use)."""
    options = options or FastOptions.from_env()
    device = torch.device(device) if device is not None else next(net.parameters()).device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (id(net), options, device)
    with _LOCK:
        s = _SAMPLERS.get(key)
        if s is not None and (s.ref() is not net or not s.valid):
            _drop_sampler_graphs(s.uid)
            del _SAMPLERS[key]
            s = None
        if s is None:
            s = FastSampler(net, options, device)
            _SAMPLERS[key] = s
            while len(_SAMPLERS) > MAX_SAMPLERS:
                _, old = _SAMPLERS.popitem(last=False)
                _drop_sampler_graphs(old.uid)
        _SAMPLERS.move_to_end(key)
        return s


# ----------------------------------------------------------------------------------------------
# the step functions (what gets compiled and captured)

def _make_drift(model, dtype, memory_format):
    def drift(x, y, alpha):
        return model(x.to(dtype=dtype, memory_format=memory_format), None, y, alpha).float().contiguous()

    return drift


def _make_ddim(model, dtype, memory_format, guided: bool):
    """One DDIM step without the eta noise: (x_next, x0_pred); c is a row of sampling.ddim_coefficients and the
    update is sampling.ddim_update, in fp32 outside the network, exactly as the eager path."""

    def ddim_step(x, t, y, g, c):
        xin = x.to(dtype=dtype, memory_format=memory_format)
        if guided:  # t, y are the doubled [cond; uncond] batch
            e_c, e_u = model(torch.cat([xin, xin]), t, y).float().chunk(2)
            eps = cfg_mix(e_c, e_u, g)
        else:
            eps = model(xin, t, y).float()
        x, x0 = ddim_update(x, eps, c)
        return x.contiguous(), x0.contiguous()

    return ddim_step


def _bump_recompile_limit(n: int = 64) -> None:
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < n:
            setattr(cfg, name, n)


def _compile(fn, opts: FastOptions):
    import torch._dynamo  # noqa: F401

    _bump_recompile_limit()
    kw = {"backend": opts.backend, "dynamic": opts.dynamic}
    if opts.backend == "inductor":
        options = {}
        if opts.mode == "max-autotune-no-cudagraphs":
            options["max_autotune"] = True
        if opts.freezing:
            options["freezing"] = True
        if options:
            options["triton.cudagraphs"] = False
            kw["options"] = options
    return torch.compile(fn, **kw)


# ----------------------------------------------------------------------------------------------
# fused AdaGN projections (applied to the private copy only)

def _embed_fused(self, t, y, alpha, batch: int, device, style=None):
    """embed() followed by every residual block's emb Linear at once: [B, sum(2 * cout)]."""
    emb = type(self).embed(self, t, y, alpha, batch, device, style)
    return torch.nn.functional.linear(torch.nn.functional.silu(emb), self._emb_w, self._emb_b)


def _resblock_fused(self, x, emb_all):
    """ResBlock.forward with its AdaGN scale/shift sliced out of the fused projection."""
    F = torch.nn.functional
    h = self.conv1(F.silu(self.norm1(x)))
    scale, shift = emb_all[:, self._emb_lo:self._emb_hi, None, None].chunk(2, dim=1)
    h = self.norm2(h) * (1 + scale) + shift
    h = self.conv2(self.drop(F.silu(h)))
    return self.skip(x) + h


def _emb_blocks(model):
    from .unet import ResBlock

    return [m for m in model.modules() if type(m) is ResBlock]


def _fold_emb(model) -> None:
    """(Re)compute the fused projection's weights from the blocks' own emb Linears."""
    blocks = _emb_blocks(model)
    with torch.no_grad():
        model._emb_w.copy_(torch.cat([b.emb.weight for b in blocks]))
        model._emb_b.copy_(torch.cat([b.emb.bias for b in blocks]))


def _fuse_emb(model) -> bool:
    """Route embed() -> one GEMM -> per-block slices, on this (private) copy; False if not applicable."""
    from .unet import UNet

    blocks = _emb_blocks(model)
    if type(model) is not UNet or not blocks or any(b.emb.bias is None for b in blocks):
        return False
    lo = 0
    for b in blocks:
        b._emb_lo, b._emb_hi = lo, lo + b.emb.out_features
        lo = b._emb_hi
        b.forward = _resblock_fused.__get__(b)
    p = blocks[0].emb.weight
    model.register_buffer("_emb_w", torch.empty(lo, p.shape[1], dtype=p.dtype, device=p.device))
    model.register_buffer("_emb_b", torch.empty(lo, dtype=p.dtype, device=p.device))
    _fold_emb(model)
    model.embed = _embed_fused.__get__(model)
    return True


@torch.no_grad()
def _fused_copy(net, device):
    """An eval-mode fp32 copy of net with the fused AdaGN projection, if it reproduces the unfused
    copy on a probe batch; else the plain copy. Returns (copy, fused)."""
    plain = copy.deepcopy(net).eval().requires_grad_(False).to(device)
    fused = copy.deepcopy(plain)
    if not _fuse_emb(fused):
        return plain, False
    cfg, g = net.config, torch.Generator().manual_seed(0)
    x = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(device)
    t = torch.tensor([3, 700], device=device)
    y = torch.tensor([0, cfg.num_classes], device=device) if cfg.num_classes else None
    alpha = torch.tensor([1.0, 2.5], device=device) if cfg.guidance_input else None
    try:
        a, b = plain(x, t, y, alpha).float(), fused(x, t, y, alpha).float()
        ok = bool(torch.isfinite(b).all()) and (a - b).abs().max().item() <= 1e-3 * (1 + a.abs().max().item())
    except Exception as err:  # noqa: BLE001 – an unexpected model: no fusion
        log.warning("driftin.fast: fused AdaGN projection not usable (%s); unfused copy", err)
        ok = False
    return (fused, True) if ok else (plain, False)


# ----------------------------------------------------------------------------------------------
# capture

def _pool(device: torch.device):
    if device.index not in _POOLS:
        with torch.cuda.device(device):
            _POOLS[device.index] = torch.cuda.graph_pool_handle()
    return _POOLS[device.index]


class _Entry:
    """One runnable: a captured CUDA graph with static inputs/outputs, or the plain function."""

    def __init__(self, run, inputs: dict, device: torch.device, use_graph: bool, warm: bool):
        self.run_fn, self.inputs, self.state = run, inputs, {}
        self.graph, self.out, self.warmup_s, self.capture_s, self.build_s = None, None, 0.0, 0.0, 0.0
        if use_graph:
            self._capture(device)
        elif warm:  # compile now, inside the build's error handling
            t0 = time.perf_counter()
            run()
            self.warmup_s = time.perf_counter() - t0

    def _capture(self, device, warmup: int = 2):
        bench = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # algorithm search during warm-up, baked into the graph
        try:
            with torch.cuda.device(device):
                t0 = time.perf_counter()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(warmup):  # compile, autotune, cuDNN/cuBLAS setup
                        self.run_fn()
                torch.cuda.current_stream().wait_stream(side)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=_pool(device), capture_error_mode="thread_local"):
                    out = self.run_fn()
                torch.cuda.synchronize()
                self.warmup_s, self.capture_s = t1 - t0, time.perf_counter() - t1
        finally:
            torch.backends.cudnn.benchmark = bench
        self.graph, self.out = graph, out

    def __call__(self):
        if self.graph is None:
            return self.run_fn()
        self.graph.replay()
        return self.out


class BuildError(RuntimeError):
    pass


def _stamp(tensors) -> tuple:
    return tensors[0].data_ptr() if tensors else 0, [t._version for t in tensors]


class FastSampler:
    """Fast drift / DDIM for one model copy (dtype, layout, compiled step functions, graph keys)."""

    def __init__(self, net, options: FastOptions, device: torch.device):
        self.ref, self.config, self.opts, self.device = weakref.ref(net), net.config, options, torch.device(device)
        self.uid, self.valid = next(_UIDS), True
        self.dtype = _DTYPES[options.dtype]
        self.memory_format = torch.channels_last if options.use_channels_last else torch.contiguous_format
        self.graphs = options.graphs and self.device.type == "cuda"
        names = [n for n, _ in net.named_parameters()] + [n for n, _ in net.named_buffers()]
        self.params = [*(t for _, t in net.named_parameters()), *(t for _, t in net.named_buffers())]
        self.stamp = _stamp(self.params)
        if options.fuse_emb:
            model, self.fused_emb = _fused_copy(net, self.device)
        else:
            model, self.fused_emb = copy.deepcopy(net).eval().requires_grad_(False).to(self.device), False
        model = model.to(dtype=self.dtype)
        self.model = model.to(memory_format=self.memory_format) if options.use_channels_last else model
        own = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        self.model_tensors = [own[n] for n in names]  # the copy's tensors in the original's order
        self.compiled, self.compile_error, self.failed = options.compile, None, {}
        self._fns: dict = {}
        self.last_entry = None

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        parts = (["cuda-graph"] if self.graphs else []) + (["compile"] if self.compiled else [])
        return "+".join(parts) or "static"

    def stale(self) -> bool:
        return _stamp(self.params) != self.stamp

    def refresh(self) -> None:
        """Copy the original's current weights into the copy, in place (graphs keep their pointers)."""
        if self.compiled and self.opts.freezing:  # weights are compiled-in constants
            self.valid = False
            return
        with torch.inference_mode(False), torch.no_grad():
            for dst, src in zip(self.model_tensors, self.params):
                dst.copy_(src)
            if self.fused_emb:
                _fold_emb(self.model)
        self.stamp = _stamp(self.params)

    def _fn(self, name: str):
        f = self._fns.get(name)
        if f is None:
            if name == "drift":
                f = _make_drift(self.model, self.dtype, self.memory_format)
            else:
                f = _make_ddim(self.model, self.dtype, self.memory_format, guided=name == "ddim_guided")
            if self.compiled:
                f = _compile(f, self.opts)
            self._fns[name] = f
        return f

    def _entry(self, key, make_inputs, run):
        """The cached entry for key, else build it: warm up (compile) and capture; on a compile
        failure retry without compiling; on any other failure raise BuildError."""
        key = (self.uid, *key)
        e = _graph_get(key)
        if e is not None:
            return e
        if key in self.failed:
            raise BuildError(self.failed[key])
        t0 = time.perf_counter()
        inputs = make_inputs()
        try:
            try:
                e = _Entry(lambda: run(inputs), inputs, self.device, self.graphs, warm=self.compiled)
            except Exception as err:
                if not self.compiled:
                    raise
                log.warning("driftin.fast: torch.compile path failed (%s: %s); using the eager model",
                            type(err).__name__, str(err)[:300])
                self.compiled, self.compile_error, self._fns = False, f"{type(err).__name__}: {err}"[:1000], {}
                e = _Entry(lambda: run(inputs), inputs, self.device, self.graphs, warm=False)
        except Exception as err:
            self.failed[key] = f"{type(err).__name__}: {err}"[:1000]
            raise BuildError(self.failed[key]) from err
        e.build_s = time.perf_counter() - t0
        _graph_put(key, e)
        return e

    # -- sampling ------------------------------------------------------------------------------
    def generate(self, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, seeds=None, callback=None):
        # static buffers / copies must be normal tensors even when called under torch.inference_mode()
        with torch.inference_mode(False), torch.no_grad():
            return self._generate(noise, method, steps, y, guidance, eta, seeds, callback)

    def _generate(self, noise, method, steps, y, guidance, eta, seeds, callback):
        if method == "drift" and guidance != 1.0 and not self.config.guidance_input:
            raise ValueError("this drift model has no guidance input; use guidance=1")
        if method not in ("drift", "ddim"):
            raise ValueError(f"unknown method {method!r}")
        if method == "ddim" and eta > 0 and seeds is None:
            raise ValueError("seeds are needed for DDIM with eta > 0")
        if callback is not None and self.stale():  # a callback must not see frames twice
            self.refresh()
        run = self._drift if method == "drift" else self._ddim
        args = (noise, y, guidance) if method == "drift" else (noise, steps, y, guidance, eta, seeds, callback)
        x = run(*args)
        if callback is None and self.stale():  # checked after launching: hidden behind the GPU work
            self.refresh()
            if not self.valid:
                raise _Rebuild()
            x = run(*args)
        return x

    def _drift(self, noise, y, guidance):
        n, dev = noise.shape[0], self.device
        alpha_in = self.config.guidance_input

        def make():
            return {"x": noise.clone(), "y": None if y is None else y.clone(),
                    "alpha": torch.full((n,), float(guidance), device=dev) if alpha_in else None}

        e = self._entry(("drift", n, y is not None), make,
                        lambda ins: self._fn("drift")(ins["x"], ins["y"], ins["alpha"]))
        ins = e.inputs
        ins["x"].copy_(noise)
        if y is not None:
            ins["y"].copy_(y)
        if alpha_in and e.state.get("guidance") != guidance:
            ins["alpha"].fill_(float(guidance))
            e.state["guidance"] = guidance
        self.last_entry = e
        out = e()
        return out.clone() if e.graph is not None else out

    def _ddim_inputs(self, noise, steps, y, guided, eta, seeds):
        n, dev, K = noise.shape[0], self.device, self.config.num_classes
        ts, coefs, sigmas = ddim_coefficients(steps, float(eta))
        nb = 2 * n if guided else n
        ins = {"x": noise.clone(), "y": None, "g": torch.zeros((), device=dev),
               "t": [torch.full((nb,), t, dtype=torch.long, device=dev) for t in ts],
               "c": [coefs[i].to(dev) for i in range(steps)],  # separate allocations (no view offsets)
               "noise": None, "sigmas": sigmas}
        if y is not None:
            ins["y"] = torch.cat([y, torch.full_like(y, K)]) if guided else y.clone()
        if eta > 0 and steps > 1:
            ins["noise"] = predraw_noise(seeds, steps, noise.shape[1:]).to(dev)
        return ins

    def _fill_ddim(self, e, noise, y, guidance, eta, seeds, steps, guided):
        ins = e.inputs
        ins["x"].copy_(noise)
        if y is not None:
            ins["y"][: y.shape[0]].copy_(y)
        if guided and e.state.get("guidance") != guidance:
            ins["g"].fill_(float(guidance))
            e.state["guidance"] = guidance
        if ins["noise"] is not None:
            ins["noise"].copy_(predraw_noise(seeds, steps, noise.shape[1:]))

    def _ddim(self, noise, steps, y, guidance, eta, seeds, callback):
        n = noise.shape[0]
        guided = y is not None and guidance != 1.0
        eta = float(eta)
        name = "ddim_guided" if guided else "ddim"

        def make():
            ins = self._ddim_inputs(noise, steps, y, guided, eta, seeds)
            ins["g"].fill_(float(guidance))
            return ins

        if callback is None:  # the whole loop, one graph
            def run(ins):
                step, x = self._fn(name), ins["x"]
                for i in range(steps):
                    x, _ = step(x, ins["t"][i], ins["y"], ins["g"] if guided else None, ins["c"][i])
                    if ins["noise"] is not None and i + 1 < steps:
                        x = torch.add(x, ins["noise"][i], alpha=ins["sigmas"][i])
                return x

            e = self._entry(("ddim", n, steps, eta, guided, y is not None), make, run)
            self._fill_ddim(e, noise, y, guidance, eta, seeds, steps, guided)
            self.last_entry = e
            out = e()
            return out.clone() if e.graph is not None else out

        # with a callback: one single-step graph, replayed per step with its t / coefficients copied in
        def make_step():
            ins = make()
            ins["t_all"], ins["c_all"] = torch.stack(ins["t"]), torch.stack(ins["c"])
            ins["t"], ins["c"] = ins["t_all"][0].clone(), ins["c_all"][0].clone()
            return ins

        def run_step(ins):
            return self._fn(name)(ins["x"], ins["t"], ins["y"], ins["g"] if guided else None, ins["c"])

        e = self._entry(("ddim_step", n, steps, eta, guided, y is not None), make_step, run_step)
        self._fill_ddim(e, noise, y, guidance, eta, seeds, steps, guided)
        ins, x = e.inputs, noise.float()
        self.last_entry = e
        for i in range(steps):
            ins["x"].copy_(x)
            ins["t"].copy_(ins["t_all"][i])
            ins["c"].copy_(ins["c_all"][i])
            x, x0 = e()
            x, x0 = x.clone(), x0.clone()
            if ins["noise"] is not None and i + 1 < steps:
                x = torch.add(x, ins["noise"][i], alpha=ins["sigmas"][i])
            callback(i, x, x0)
        return x


class _Rebuild(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# entry points

def eager_generate(net, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, seeds=None, callback=None):
    """The reference path (what generate() does with fast=False)."""
    if method != "drift" and seeds is None and eta > 0:
        raise ValueError("seeds are needed for DDIM with eta > 0")
    noise_fn = step_noise(seeds, noise) if method != "drift" and seeds is not None else None
    return eager_sample(net, noise, method, steps, y, guidance, eta, noise_fn, callback)


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
                  *, options: FastOptions | None = None):
    """generate()'s fast path: x [n, C, H, W] float32 (unclamped), equal to the eager path up to bf16."""
    reason = None
    if not _flag("DRIFTIN_FAST", True):
        reason = "DRIFTIN_FAST=0"
    elif noise.device.type != "cuda":
        reason = f"device {noise.device.type}: eager"
    elif noise.shape[0] == 0:
        reason = "empty batch"
    if reason is None:
        options = options or FastOptions.from_env()
        for _ in range(2):
            try:
                with _LOCK:
                    s = get_sampler(net, options, noise.device)
                    x = s.generate(noise, method, steps, y, guidance, eta, seeds, callback)
                    _info(s.path, None, s)
                    return x
            except _Rebuild:
                continue  # a frozen model whose weights changed: the next get_sampler makes a new copy
            except BuildError as err:
                if _flag("DRIFTIN_FAST_STRICT", False):
                    raise
                reason = f"fast path failed, eager used: {err}"
                if reason not in _WARNED:
                    _WARNED.add(reason)
                    log.warning("driftin.fast: %s", reason)
                break
    _info("eager", reason)
    return eager_generate(net, noise, method, steps, y, guidance, eta, seeds, callback)
