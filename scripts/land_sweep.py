"""Land a DDIM sampler sweep (`bash scripts/gpu_lease.sh start sweep`, #21) into the repository.

    python scripts/land_sweep.py runs/lease-N/eval_ddpm_sweep.json

The sweep file (the committed benchmarks/eval_ddpm_sweep.json plus the lease's runs, as the sweep phase leaves it)
replaces benchmarks/eval_ddpm_sweep.json; its FID-50k entries measured on the shipped DDPM (same training step) join
weights/ddpm-cifar10/eval.json and the card is rebuilt, so the card's usage shows the best guidance; where the best
setting changed, samples.png is redrawn with it (minutes on a CPU; --no-grid skips it). Prints the best
DDIM-50 setting against the app's default (driftin.demo.DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL): a change there is a
code edit, then
`python scripts/make_assets.py compare`, `... gif` and `python scripts/screenshot_app.py --ddpm-min-step 22`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from driftin.demo import DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL, guided_at  # noqa: E402
from driftin.eval import write_json  # noqa: E402
from driftin.modelcard import best_default_sampler, draw_samples, load_eval, sampler_settings, write_model_card  # noqa: E402


def land(sweep: Path, weights: Path, bench: Path, grid: bool = True) -> dict | None:
    """Copy the sweep to `bench`, merge its 50k entries of `weights`' step into its eval.json, rebuild the card (and
    the sample grid, if grid and the best setting changed); the best DDIM-50 row of the folder afterwards (None if it
    has none)."""
    before = sampler_settings(best_default_sampler(load_eval(weights), drift=False))
    entries = json.loads(sweep.read_text())
    step = json.loads((weights / "config.json").read_text())["steps"]
    merged = {k: e for k, e in entries.items() if e.get("n") == 50_000 and e.get("train_steps") == step}
    skipped = sorted(k for k, e in entries.items() if e.get("train_steps") != step)
    if skipped:  # history of other weights stays in the benchmark file only
        print(f"not in {weights.name}/eval.json (other training steps than {step}): {', '.join(skipped)}")
    write_json(bench, entries)
    evals = json.loads((weights / "eval.json").read_text())
    write_json(weights / "eval.json", {**evals, **merged})
    write_model_card(weights)
    print(f"wrote {bench}, {weights / 'eval.json'} (+{len(merged)} FID-50k entries: {', '.join(sorted(merged)) or '-'}), the card")
    best = best_default_sampler(load_eval(weights), drift=False)
    if grid and sampler_settings(best) != before:
        print(f"best setting changed ({before or 'defaults'} -> {sampler_settings(best)}): {draw_samples(weights)} redrawn")
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, help="the lease's eval_ddpm_sweep.json")
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "ddpm-cifar10")
    ap.add_argument("--bench", type=Path, default=ROOT / "benchmarks" / "eval_ddpm_sweep.json")
    ap.add_argument("--no-grid", action="store_true", help="keep samples.png even where the best setting changed")
    a = ap.parse_args(argv)
    best = land(a.sweep, a.weights, a.bench, grid=not a.no_grid)
    if best:
        g = best["guidance"]
        interval = best.get("guidance_interval")
        app = (DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL)
        # the scale and its interval go together: an interval's best scale guiding every step is another sampler
        advice = "" if (g, interval) == app else (
            f" -> set DDIM_GUIDANCE = {g:g} and DDIM_GUIDANCE_INTERVAL = {interval} in driftin/demo/settings.py, then the "
            "assets (see --help)")
        print(f"best DDIM-50: guidance {g:g}{guided_at(interval)}, {best['spacing']} spacing, FID-50k {best['fid']:.2f}; "
              f"app default {DDIM_GUIDANCE:g}{guided_at(DDIM_GUIDANCE_INTERVAL)}{advice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
