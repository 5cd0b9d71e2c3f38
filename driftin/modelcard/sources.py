"""What a model card is built from: the weights folder's eval.json, train_log.jsonl, infer_*.json and config."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _num(v):
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _entries(raw) -> list[tuple[str | None, dict]]:
    """(name, entry) from {"entries": [...]}, {"entries": {...}}, {name: entry, ...} or [entry, ...]."""
    if isinstance(raw, dict) and "entries" in raw:
        raw = raw["entries"]
    if isinstance(raw, dict):
        return [(str(k), v) for k, v in raw.items() if isinstance(v, dict)]
    if isinstance(raw, list):
        return [(e.get("name") or e.get("entry"), e) for e in raw if isinstance(e, dict)]
    return []


_METRIC_KEYS = {"fid": ("fid", "fid_inception"), "kid": ("kid",), "fd": ("fd", "fd_evalnet", "FD"), "precision": ("precision",),
                "recall": ("recall",), "is": ("is", "is_analogue", "IS"), "class_acc": ("class_acc",)}


def load_eval(folder: str | Path) -> list[dict]:
    """Normalized eval rows: name, fid, kid, fd, precision, recall, is, class_acc, n, method, steps,
    guidance, classes, split. Entries without any metric are skipped; a missing/broken file gives []."""
    rows = []
    for name, e in _entries(_read_json(Path(folder) / "eval.json")):
        m = e.get("metric") if isinstance(e.get("metric"), dict) else e.get("metrics") if isinstance(e.get("metrics"), dict) else {}
        src = {**e, **m}
        row = {}
        for key, aliases in _METRIC_KEYS.items():
            row[key] = next((_num(src[a]) for a in aliases if _num(src.get(a)) is not None), None)
        if all(row[k] is None for k in _METRIC_KEYS):
            continue
        ref = e.get("reference") if isinstance(e.get("reference"), dict) else {}
        steps = _num(e.get("steps"))
        row.update(name=name, n=int(_num(e.get("n")) or 0) or None, method=e.get("method"),
                   steps=int(steps) if steps is not None else None, guidance=_num(e.get("guidance")),
                   classes=e.get("classes"), split=ref.get("split") or e.get("split") or "train")
        rows.append(row)
    order = {"drift": 0, "ddim": 1, "ddpm": 2}
    rows.sort(key=lambda r: (order.get(str(r["method"]), 9), r["steps"] or 0, r["guidance"] or 0, -(r["n"] or 0), str(r["name"])))
    return rows


def read_log(path: str | Path) -> list[dict]:
    """log.jsonl records sorted by step; a resumed run's repeated steps keep the last record."""
    by_step = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(rec, dict) and _num(rec.get("step")) is not None:
            by_step[int(rec["step"])] = rec
    return [by_step[s] for s in sorted(by_step)]


def copy_speed_files(folder: str | Path, repo_root: str | Path | None) -> list[Path]:
    """Copy <repo>/benchmarks/infer_*.json (sampling speed from `python -m driftin.bench infer`) into the folder,
    replacing older copies, so that the card can be regenerated from the folder alone."""
    copied = []
    for f in sorted(Path(repo_root, "benchmarks").glob("infer_*.json")) if repo_root is not None else []:
        dest = Path(folder) / f.name
        if _read_json(f) is not None and f.resolve() != dest.resolve():
            shutil.copyfile(f, dest)
            copied.append(dest)
    return copied


def load_speed(folder: str | Path) -> list[tuple[str, list[dict]]]:
    """(file name, rows) of the folder's sampling-speed JSONs infer_*.json; unreadable files are skipped."""
    files = sorted(Path(folder).glob("infer_*.json"))
    out = []
    for f in files:
        raw = _read_json(f)
        if isinstance(raw, dict) and not any(k in raw for k in ("entries", "results", "rows")) \
                and not all(isinstance(v, dict) for v in raw.values()):
            raw = [raw]  # a single flat result
        elif isinstance(raw, dict) and ("results" in raw or "rows" in raw):
            raw = raw.get("results") or raw.get("rows")
        rows = [{"name": n, **e} if n and "name" not in e else e for n, e in _entries(raw)]
        if rows:
            out.append((f.name, rows))
    return out


def count_parameters(model_cfg: dict) -> int | None:
    """Parameter count of the UNet for a config dict, built on the meta device (no memory, no init)."""
    try:
        import torch

        from ..config import UNetConfig, from_dict
        from ..unet import UNet, count_params

        with torch.device("meta"):
            return count_params(UNet(from_dict(UNetConfig, model_cfg)))
    except Exception:  # noqa: BLE001 - the card then omits the number
        return None


def _weights_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _repo_root() -> Path:
    from ..data import REPO

    return REPO
