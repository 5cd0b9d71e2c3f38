"""Evaluation: Fréchet distance, precision/recall and an IS analogue in the feature space of an
independently trained CIFAR-10 classifier (the "evalnet"), plus standard Inception FID when the user
supplies Inception weights. CLI: `python -m driftin.eval --help`; calibration: `python -m driftin.eval.calibrate`."""
from driftin.eval.fd import fd_from_features, feature_stats, frechet_distance
from driftin.eval.features import EvalFeatures, load_evalnet, reference_stats
from driftin.eval.metrics import compute_metrics, is_analogue, precision_recall

__all__ = ["frechet_distance", "feature_stats", "fd_from_features", "precision_recall", "is_analogue", "compute_metrics",
           "EvalFeatures", "load_evalnet", "reference_stats"]


def git_commit() -> str:
    """HEAD of the repository this package lives in; DRIFTIN_GIT_COMMIT overrides it (copies of the tree
    without .git, e.g. on the GPU machine); "unknown" otherwise."""
    import os
    import subprocess
    from pathlib import Path

    if os.environ.get("DRIFTIN_GIT_COMMIT"):
        return os.environ["DRIFTIN_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a markdown table; floats to 4 significant digits, missing cells empty."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path, data) -> None:
    """Write JSON (indent 2, trailing newline) atomically, through checkpoint.write_atomic."""
    import json

    from driftin.checkpoint import write_atomic

    write_atomic(path, json.dumps(data, indent=2) + "\n")
