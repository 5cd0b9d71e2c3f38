"""Publish a driftin weights folder as a Hugging Face Hub model repo, and (re)generate its model card.

    python -m driftin.publish push weights/drift-cifar10 --repo <user>/driftin-drift-cifar10 [--private]
                                   [--revision R] [--dry-run] [--token T] [--no-card] [--message M]
    python -m driftin.publish card weights/drift-cifar10 [--run runs/drift] [--grid grid.png] [--repo <user>/<name>]

A weights folder is what `driftin.hub.save_pretrained` / `python -m driftin.train export` write:
fp16 safetensors shard(s) (+ model.safetensors.index.json), config.json, and the card files
(README.md, training_curve.png, train_log.jsonl, samples.png, eval.json). Download it back with
`hf download <user>/<name> --local-dir weights/<name>` or use the repo id directly with
`driftin.load_pretrained("<user>/<name>")`.

Only long-stable huggingface_hub APIs are used (HfApi.create_repo / create_branch / upload_folder,
get_token), so this works with huggingface_hub 0.2x, 1.x and 2.x.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .modelcard import MARKER, write_model_card
from .repo_files import IGNORE_PATTERNS, list_upload_files

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

LOGIN_HELP = ("no Hugging Face token found. Log in once with `hf auth login` (older huggingface_hub: "
              "`huggingface-cli login`), or set HF_TOKEN=<token> in the environment, or pass --token <token>. "
              "Create a token with write access at https://huggingface.co/settings/tokens. "
              "(--dry-run needs no token.)")


class PublishError(RuntimeError):
    """A folder that cannot be published, a missing token, or a failed upload, with the reason."""


@dataclass
class PushResult:
    repo_id: str
    revision: str
    files: list[tuple[str, int]]  # (path in repo, size in bytes), sorted
    dry_run: bool = False
    commit_url: str | None = None
    repo_url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(s for _, s in self.files)


def check_folder(folder: str | Path, load: bool = True) -> dict:
    """Validate a driftin weights folder; returns its config.json. load=True also loads the weights
    with driftin.hub.load_pretrained (shapes, shards, dtype), the same check a downloader runs."""
    from .config import UNetConfig, from_dict

    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder (expected a driftin weights folder, e.g. weights/drift-cifar10)")
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise PublishError(f"{folder} has no config.json: not a driftin weights folder "
                           "(write one with `python -m driftin.train export runs/<run> <folder>`)")
    try:
        config = json.loads(cfg_path.read_text())
        from_dict(UNetConfig, config["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise PublishError(f"{cfg_path} is not a driftin config (needs a valid 'model' section): {type(e).__name__}: {e}") from e
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise PublishError(f"{index} is not a safetensors index: {e}") from e
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise PublishError(f"{index} names shard(s) missing from {folder}: {missing}")
    elif not (folder / "model.safetensors").is_file():
        raise PublishError(f"no model.safetensors or model.safetensors.index.json in {folder}: nothing to publish")
    if load:
        from .hub import WeightsError, load_pretrained

        try:
            load_pretrained(folder)
        except WeightsError as e:
            raise PublishError(f"{folder} does not load: {e}") from e
    return config


def find_token(token: str | None = None) -> str | None:
    """The token to use: the argument, else HF_TOKEN / the cached `hf auth login` token."""
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - huggingface_hub < 0.20
        from huggingface_hub import HfFolder

        return HfFolder.get_token()
    return get_token()


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except (ImportError, AttributeError):  # pragma: no cover
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")


def _is_generated_card(readme: Path) -> bool:
    return readme.exists() and MARKER in readme.read_text(encoding="utf-8", errors="replace")


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                dry_run: bool = False, token: str | None = None, commit_message: str | None = None,
                endpoint: str | None = None, update_card: bool = False, validate: bool = True) -> PushResult:
    """Upload a driftin weights folder to the Hub model repo `repo_id` (created if needed).

    revision: a branch; created from main when missing. dry_run: validate and list the files
    (PushResult.files) without a token or any network call. update_card: first regenerate the
    folder's model card for this repo id when README.md is missing or was generated by driftin
    (a hand-written README.md is left alone). endpoint: Hub URL (default: HF_ENDPOINT / huggingface.co).
    Returns a PushResult with the uploaded files and the commit URL.
    """
    folder = Path(folder)
    if not REPO_ID_RE.match(repo_id or ""):
        raise PublishError(f"repo id {repo_id!r} must look like '<user or org>/<name>'")
    config = check_folder(folder, load=validate)
    tok = None
    if not dry_run:  # fail before touching the folder
        tok = find_token(token)
        if not tok:
            raise PublishError(LOGIN_HELP)
        if _offline():
            raise PublishError("HF_HUB_OFFLINE is set: unset it (or set HF_HUB_OFFLINE=0) to push to the Hub")
    notes = []
    readme = folder / "README.md"
    if update_card and (not readme.exists() or _is_generated_card(readme)):
        if dry_run:
            notes.append(f"README.md would be (re)generated for {repo_id} (not in a dry run)")
        else:
            write_model_card(folder, repo_id=repo_id)
            notes.append(f"regenerated {readme} for {repo_id}")
    elif not readme.exists():
        notes.append(f"{folder} has no README.md: the repo gets no model card "
                     f"(write one with `python -m driftin.publish card {folder}`)")
    files = list_upload_files(folder)
    rev = revision or "main"
    result = PushResult(repo_id=repo_id, revision=rev, files=files, dry_run=dry_run, notes=notes)
    if dry_run:
        return result

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=tok)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        result.repo_url = str(url)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        name = folder.resolve().name
        message = commit_message or (f"Upload {name} ({config.get('objective', '?')}, "
                                     f"{(config.get('train_config') or {}).get('preset', '?')}, step {config.get('steps', '?')}) with driftin")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                                 commit_message=message, ignore_patterns=list(IGNORE_PATTERNS))
    except PublishError:
        raise
    except Exception as e:  # noqa: BLE001 - auth, network, permission: name the repo and the cause
        status = getattr(getattr(e, "response", None), "status_code", None)
        hint = (" (check that the token has write access to this namespace: `hf auth whoami`)"
                if status in (401, 403) else "")
        raise PublishError(f"push of {folder} to {repo_id} failed: {type(e).__name__}: {e}{hint}") from e
    result.commit_url = str(getattr(info, "commit_url", info))
    return result


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _print_files(files: list[tuple[str, int]]) -> None:
    for path, size in files:
        print(f"  {size:>12,d}  {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m driftin.publish", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("push", help="upload a weights folder to a Hub model repo")
    p.add_argument("folder", help="weights folder, e.g. weights/drift-cifar10")
    p.add_argument("--repo", required=True, help="<user or org>/<name>, e.g. me/driftin-drift-cifar10")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.add_argument("--revision", help="branch to push to (created when missing); default main")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; upload nothing")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the `hf auth login` token)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--no-card", action="store_true",
                   help="upload README.md as is (default: regenerate a driftin-generated or missing card for this repo id)")
    c = sub.add_parser("card", help="(re)generate README.md and training_curve.png in a weights folder")
    c.add_argument("folder")
    c.add_argument("--run", help="training run folder with log.jsonl (copied as train_log.jsonl); "
                                 "default: the folder's train_log.jsonl, else the run named in config.json")
    c.add_argument("--grid", help="sample grid image, copied into the folder as samples.png")
    c.add_argument("--repo", help="Hub repo id to use in the usage snippet")
    a = ap.parse_args(argv)

    try:
        if a.cmd == "card":
            path = write_model_card(a.folder, run_dir=a.run, grid=a.grid, repo_id=a.repo)
            print(f"wrote {path}")
            for extra in ("training_curve.png", "train_log.jsonl", "samples.png"):
                if (Path(a.folder) / extra).exists():
                    print(f"      {Path(a.folder) / extra}")
            return 0
        res = push_to_hub(a.folder, a.repo, private=a.private, revision=a.revision, dry_run=a.dry_run,
                          token=a.token, commit_message=a.message, update_card=not a.no_card)
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in res.notes:
        print(f"note: {note}")
    if res.dry_run:
        print(f"dry run: would upload {len(res.files)} files ({_fmt_size(res.total_bytes)}) to "
              f"{res.repo_id} (revision {res.revision}):")
        _print_files(res.files)
        print("nothing uploaded (dry run)")
    else:
        print(f"uploaded {len(res.files)} files ({_fmt_size(res.total_bytes)}) to {res.repo_id} (revision {res.revision}):")
        _print_files(res.files)
        print(f"commit: {res.commit_url}")
        print(f"download: hf download {res.repo_id} --local-dir weights/{res.repo_id.split('/')[1]}"
              + (f" --revision {res.revision}" if res.revision != "main" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
