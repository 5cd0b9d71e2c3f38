"""FastSampler: fast drift / DDIM for one model copy (dtype, layout, compiled step functions, graph keys).

The step functions are what gets compiled and captured; their math is sampling.py's (CFG mix, DDIM update),
with the coefficient table and the eta noise pre-computed into static device buffers.
"""
from __future__ import annotations

import copy
import itertools
import logging
import time
import weakref

import torch

from ..diffusion import ddim_timesteps
from ..sampling import cfg_mix, ddim_coefficients, ddim_update, guidance_at, in_interval, predraw_noise
from .fusion import fold_emb, fused_copy
from .graphs import GRAPHS, BuildError, Entry, compile_fn
from .options import _DTYPES, FastOptions

log = logging.getLogger("driftin.fast")
_UIDS = itertools.count()


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
            model, self.fused_emb = fused_copy(net, self.device)
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
                fold_emb(self.model)
        self.stamp = _stamp(self.params)

    def _fn(self, name: str):
        f = self._fns.get(name)
        if f is None:
            if name == "drift":
                f = _make_drift(self.model, self.dtype, self.memory_format)
            else:
                f = _make_ddim(self.model, self.dtype, self.memory_format, guided=name == "ddim_guided")
            if self.compiled:
                f = compile_fn(f, self.opts)
            self._fns[name] = f
        return f

    def _entry(self, key, make_inputs, run):
        """The cached entry for key, else build it: warm up (compile) and capture; on a compile
        failure retry without compiling; on any other failure raise BuildError."""
        key = (self.uid, *key)
        e = GRAPHS.get(key)
        if e is not None:
            return e
        if key in self.failed:
            raise BuildError(self.failed[key])
        t0 = time.perf_counter()
        inputs = make_inputs()
        try:
            try:
                e = Entry(lambda: run(inputs), inputs, self.device, self.graphs, warm=self.compiled)
            except Exception as err:
                if not self.compiled:
                    raise
                log.warning("driftin.fast: torch.compile path failed (%s: %s); using the eager model",
                            type(err).__name__, str(err)[:300])
                self.compiled, self.compile_error, self._fns = False, f"{type(err).__name__}: {err}"[:1000], {}
                e = Entry(lambda: run(inputs), inputs, self.device, self.graphs, warm=False)
        except Exception as err:
            self.failed[key] = f"{type(err).__name__}: {err}"[:1000]
            raise BuildError(self.failed[key]) from err
        e.build_s = time.perf_counter() - t0
        GRAPHS.put(key, e)
        return e

    # -- sampling ------------------------------------------------------------------------------
    def generate(self, noise, method, steps=50, y=None, guidance=1.0, eta=0.0, seeds=None, callback=None, spacing="uniform",
                 guidance_interval=None):
        # static buffers / copies must be normal tensors even when called under torch.inference_mode()
        with torch.inference_mode(False), torch.no_grad():
            return self._generate(noise, method, steps, y, guidance, eta, seeds, callback, spacing, guidance_interval)

    def _generate(self, noise, method, steps, y, guidance, eta, seeds, callback, spacing="uniform", guidance_interval=None):
        if method == "drift" and guidance != 1.0 and not self.config.guidance_input:
            raise ValueError("this drift model has no guidance input; use guidance=1")
        if method not in ("drift", "ddim"):
            raise ValueError(f"unknown method {method!r}")
        if method == "ddim" and eta > 0 and seeds is None:
            raise ValueError("seeds are needed for DDIM with eta > 0")
        if callback is not None and self.stale():  # a callback must not see frames twice
            self.refresh()
        run = self._drift if method == "drift" else self._ddim
        args = ((noise, y, guidance) if method == "drift"
                else (noise, steps, y, guidance, eta, seeds, callback, spacing, guidance_interval))
        x = run(*args)
        if callback is None and self.stale():  # checked after launching: hidden behind the GPU work
            self.refresh()
            if not self.valid:
                raise Rebuild()
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

    def _ddim_inputs(self, noise, steps, y, guided, eta, spacing="uniform"):
        n, dev, K = noise.shape[0], self.device, self.config.num_classes
        ts, coefs, sigmas = ddim_coefficients(steps, float(eta), spacing)
        nb = 2 * n if guided else n
        ins = {"x": noise.clone(), "y": None, "ts": ts,
               "g": [torch.zeros((), device=dev) for _ in ts],  # the CFG scale per step (a guidance interval)
               "t": [torch.full((nb,), t, dtype=torch.long, device=dev) for t in ts],
               "c": [coefs[i].to(dev) for i in range(steps)],  # separate allocations (no view offsets)
               "noise": None, "sigmas": sigmas}
        if y is not None:
            ins["y"] = torch.cat([y, torch.full_like(y, K)]) if guided else y.clone()
        if eta > 0 and steps > 1:  # a static buffer: _fill_ddim draws the request's noise into it (also on a miss;
            # in the per-step replay only into the entry whose noise the request adds, entries[guided])
            ins["noise"] = torch.empty(steps - 1, *noise.shape, device=dev)
        return ins

    @staticmethod
    def _fill_guidance(ins, guidance, interval):
        """Each step's CFG scale (sampling.guidance_at) into its static scalar (the replayed graph reads them)."""
        for g, t in zip(ins.get("g_all", ins["g"]), ins["ts"]):
            g.fill_(guidance_at(t, float(guidance), interval))

    def _fill_ddim(self, e, noise, y, guidance, seeds, steps, guided, interval=None, eta_noise=True):
        """A request's inputs into an entry's static buffers; eta_noise=False leaves its noise buffer alone (a
        request stepping through two entries adds the noise of one of them)."""
        ins = e.inputs
        ins["x"].copy_(noise)
        if y is not None:
            ins["y"][: y.shape[0]].copy_(y)
        if guided and e.state.get("guidance") != (guidance, interval):
            self._fill_guidance(ins, guidance, interval)
            e.state["guidance"] = (guidance, interval)
        if ins["noise"] is not None and eta_noise:
            ins["noise"].copy_(predraw_noise(seeds, steps, noise.shape[1:]))

    def _ddim(self, noise, steps, y, guidance, eta, seeds, callback, spacing="uniform", interval=None):
        n = noise.shape[0]
        eta = float(eta)
        # which steps run the doubled [cond; uncond] batch: with a guidance interval only those inside it (the rest are
        # plain conditional steps, as in the eager path), so the step pattern is part of each entry's key (from the
        # timesteps alone: the coefficients are computed only when an entry is built)
        cfg = y is not None and guidance != 1.0
        mask = tuple(cfg and in_interval(t, interval) for t in ddim_timesteps(steps, spacing=spacing))
        guided = any(mask)

        def make(guided=guided):
            ins = self._ddim_inputs(noise, steps, y, guided, eta, spacing)
            self._fill_guidance(ins, guidance, interval)
            return ins

        if callback is None:  # the whole loop, one graph
            def run(ins):
                x, y_c = ins["x"], None if ins["y"] is None else ins["y"][:n]
                for i in range(steps):
                    if mask[i]:
                        x, _ = self._fn("ddim_guided")(x, ins["t"][i], ins["y"], ins["g"][i], ins["c"][i])
                    else:  # the conditional half of a doubled batch's static labels and timesteps
                        x, _ = self._fn("ddim")(x, ins["t"][i][:n], y_c, None, ins["c"][i])
                    if ins["noise"] is not None and i + 1 < steps:
                        x = torch.add(x, ins["noise"][i], alpha=ins["sigmas"][i])
                return x

            e = self._entry(("ddim", n, steps, eta, guided, y is not None, spacing, mask if guided else ()), make, run)
            self._fill_ddim(e, noise, y, guidance, seeds, steps, guided, interval)
            self.last_entry = e
            out = e()
            return out.clone() if e.graph is not None else out

        # with a callback: one single-step graph per kind of step (guided / plain), replayed per step with its
        # t / coefficients copied in
        def step_entry(kind):  # kind: this entry's steps are guided; the request's eta noise lives in entries[guided]
            def make_step():
                ins = make(kind)
                ins["t_all"], ins["c_all"], ins["g_all"] = torch.stack(ins["t"]), torch.stack(ins["c"]), ins["g"]
                ins["t"], ins["c"], ins["g"] = ins["t_all"][0].clone(), ins["c_all"][0].clone(), ins["g_all"][0].clone()
                return ins

            def run_step(ins):
                name = "ddim_guided" if kind else "ddim"
                return self._fn(name)(ins["x"], ins["t"], ins["y"], ins["g"] if kind else None, ins["c"])

            e = self._entry(("ddim_step", n, steps, eta, kind, y is not None, spacing), make_step, run_step)
            self._fill_ddim(e, noise, y, guidance, seeds, steps, kind, interval, eta_noise=kind == guided)
            return e

        entries = {g: step_entry(g) for g in set(mask)}  # the kinds of step this request runs
        x, eta_noise = noise.float(), entries[guided].inputs
        self.last_entry = entries[guided]
        for i in range(steps):
            e = entries[mask[i]]
            ins = e.inputs
            ins["x"].copy_(x)
            ins["t"].copy_(ins["t_all"][i])
            ins["c"].copy_(ins["c_all"][i])
            ins["g"].copy_(ins["g_all"][i])
            x, x0 = e()
            x, x0 = x.clone(), x0.clone()
            if eta_noise["noise"] is not None and i + 1 < steps:
                x = torch.add(x, eta_noise["noise"][i], alpha=eta_noise["sigmas"][i])
            callback(i, x, x0)
        return x


class Rebuild(Exception):
    """A frozen (compiled-in) model's weights changed: the caller drops this sampler and makes a new one."""

    pass
