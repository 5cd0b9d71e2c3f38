"""Which files of a weights folder go to the Hub: the ignore rules shared by publishing and the model card.

The card lists the files a push uploads, and publish.py pushes them; both read this module, so neither
has to import the other.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

# Never uploaded: temporary files (eval.json.tmp<pid>), caches, and pickle checkpoints (resume
# state lives in runs/<x>/checkpoint.pt; inference weights are safetensors only).
IGNORE_PATTERNS = ["*.tmp", "*.tmp[0-9]*", "*.part", "*.lock", "*__pycache__*", "*.pyc", ".DS_Store", "*/.DS_Store",
                   "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.bin", ".ipynb_checkpoints*", "*/.ipynb_checkpoints*"]
# What huggingface_hub itself never uploads (.git, its .cache/huggingface download metadata).
_HF_DEFAULT_IGNORE = [".git", ".git/*", "*/.git", "**/.git/**", ".cache/huggingface", ".cache/huggingface/*",
                      "*/.cache/huggingface", "**/.cache/huggingface/**"]


def default_ignore_patterns() -> list[str]:
    try:
        from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS
        hf = list(DEFAULT_IGNORE_PATTERNS)
    except ImportError:
        hf = list(_HF_DEFAULT_IGNORE)
    return IGNORE_PATTERNS + hf


def _ignored(path: str, patterns: list[str]) -> bool:
    # Same semantics as huggingface_hub.utils.filter_repo_objects: fnmatch on the posix relative
    # path, plus "dir/" patterns matching everything under dir.
    for p in patterns:
        if p.endswith("/"):
            p += "*"
        if fnmatch.fnmatch(path, p):
            return True
    return False


def list_upload_files(folder: str | Path) -> list[tuple[str, int]]:
    """(path in repo, size) of every file `push_to_hub` would upload from `folder`, sorted."""
    folder = Path(folder).expanduser().resolve()
    pats = default_ignore_patterns()
    try:
        from huggingface_hub.utils import filter_repo_objects
    except ImportError:  # pragma: no cover - very old huggingface_hub
        filter_repo_objects = None
    rel = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
    if filter_repo_objects is not None:
        keep = list(filter_repo_objects(list(rel), ignore_patterns=pats))
    else:  # pragma: no cover
        keep = [r for r in rel if not _ignored(r, pats)]
    return sorted((r, rel[r].stat().st_size) for r in keep)
