"""write_model_card: gather a folder's card sources (run log, sample grid, speed files) and write README.md;
draw_samples: the folder's sample grid, drawn the way its card says to sample."""
from __future__ import annotations

import shutil
from pathlib import Path

from .plot import plot_training_curve
from .recipe import _norm
from .sources import _read_json, _repo_root, copy_speed_files, load_eval, objective_of, read_log
from .text import best_default_sampler, build_card_text, sampler_flags


def _find_run(folder: Path, tc: dict) -> Path | None:
    """The run folder named by train_config.out, if its config.json is this recipe."""
    out = tc.get("out")
    if not out:
        return None
    for base in (Path.cwd(), _repo_root()):
        run = base / out
        if (run / "log.jsonl").exists() and _read_json(run / "config.json") == _norm(tc):
            return run
    return None


def sample_grid_args(folder: str | Path) -> list[str]:
    """`python -m driftin.sample` arguments for a weights folder's samples.png: 100 images, a column per class, from
    the default sampler (drift: 1 step; DDPM: DDIM 50 steps) at the settings that scored best in its eval.json,
    the ones its card's usage shows."""
    folder = Path(folder)
    cfg = _read_json(folder / "config.json") or {}
    drift = objective_of(cfg) == "drift"
    args = ["--weights", str(folder), "--n", "100", "--nrow", "10"] + ([] if drift else ["--method", "ddim", "--steps", "50"])
    return args + sampler_flags(best_default_sampler(load_eval(folder), drift)) + ["--out", str(folder / "samples.png")]


def draw_samples(folder: str | Path) -> Path:
    """(Re)draw samples.png in a weights folder (sample_grid_args); CPU takes minutes for a DDPM."""
    from driftin.sample import main  # here, not at the top: the sampler pulls in the model code

    main(sample_grid_args(folder))
    return Path(folder) / "samples.png"


def write_model_card(folder: str | Path, run_dir: str | Path | None = None, grid: str | Path | None = None,
                     repo_id: str | None = None) -> Path:
    """Write README.md (+ training_curve.png, train_log.jsonl, samples.png when available) into `folder`.

    run_dir: the training run (its log.jsonl is copied in as train_log.jsonl, its final samples_<step>.png
    as samples.png when no grid is given); default: the folder's own train_log.jsonl, else the run that
    config.json's train_config.out names. grid: a sample grid image, copied in as samples.png.
    repo_id: the Hub repo the usage snippet names (default a <user>/driftin-<name> placeholder).
    """
    folder = Path(folder)
    cfg = _read_json(folder / "config.json")
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise FileNotFoundError(f"{folder}/config.json is missing or has no 'model' section: not a driftin weights folder")
    tc = cfg.get("train_config") or {}
    run = Path(run_dir) if run_dir else (None if (folder / "train_log.jsonl").exists() else _find_run(folder, tc))
    if run is not None:
        log = run / "log.jsonl"
        if not log.exists():
            raise FileNotFoundError(f"{log} does not exist (give --run the training run folder)")
        if log.resolve() != (folder / "train_log.jsonl").resolve():
            shutil.copyfile(log, folder / "train_log.jsonl")
    if grid:
        if Path(grid).resolve() != (folder / "samples.png").resolve():
            shutil.copyfile(grid, folder / "samples.png")
    elif run is not None and not (folder / "samples.png").exists() and cfg.get("steps") is not None:
        final = run / f"samples_{int(cfg['steps']):07d}.png"
        if final.exists():
            shutil.copyfile(final, folder / "samples.png")
    copy_speed_files(folder, _repo_root())
    records = read_log(folder / "train_log.jsonl")
    curve = folder / "training_curve.png"
    if records:
        plot_training_curve(records, curve, title=f"{cfg.get('objective', '')} {tc.get('preset', '')}".strip())
    text = build_card_text(folder, repo_id=repo_id, train_records=records)
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
