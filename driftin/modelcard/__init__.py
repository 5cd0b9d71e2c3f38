"""Model cards for driftin weights folders, built from the folder's own data.

    write_model_card("weights/drift-cifar10", run_dir="runs/drift", grid="grid.png", repo_id="me/driftin-drift-cifar10")

Sources (each optional except config.json; what is missing is left out of the card):
  config.json          architecture ("model"), objective, steps, train_config (the recipe)
  eval.json            Inception FID / KID (headline) and evalnet diagnostics from `python -m driftin.eval`
  fid_curve.json/.png  FID-10k vs images seen over the run's snapshots (`python -m driftin.eval.curve`)
  train_log.jsonl      the run's log.jsonl (copied in from run_dir) -> training_curve.png
  samples.png          a sample grid (copied in from `grid` or the run's final samples_<step>.png)
  infer_*.json         sampling speed, refreshed from <repo>/benchmarks/infer_*.json when present
Everything the card needs is copied into the folder, so it can be regenerated from the folder alone
(e.g. after `hf download`).

Modules: sources (reading the folder), recipe (the training command), plot (training_curve.png), text (metadata
and markdown), writer (write_model_card).
"""

from __future__ import annotations

from .plot import plot_training_curve
from .recipe import find_recipe, reproduce_command, train_command
from .sources import copy_speed_files, count_parameters, load_eval, load_speed, read_log
from .text import (ANCHORS, FD_METRIC, FD_NOTE, FID_METRIC, FID_NAME, FID_NOTE, MARKER, PAPER, _speed_rows,  # noqa: F401
                   best_default_sampler, sampler_settings, sampler_flags,
                   build_card_text)
from .writer import draw_samples, sample_grid_args, write_model_card

__all__ = ["MARKER", "PAPER", "FD_METRIC", "FID_METRIC", "FID_NAME", "FID_NOTE", "FD_NOTE", "ANCHORS", "load_eval",
           "read_log", "load_speed", "copy_speed_files", "count_parameters", "find_recipe", "train_command",
           "reproduce_command", "plot_training_curve", "best_default_sampler", "sampler_settings", "sampler_flags",
           "build_card_text", "write_model_card", "sample_grid_args", "draw_samples"]
