"""driftin.publish: dry run, a push against a local stand-in of the Hub HTTP API, loading from a Hub
cache laid out as snapshot_download leaves it (offline), and the no-token error. Offline, CPU."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

from driftin.config import preset
from driftin.hub import save_pretrained
from driftin.publish import PublishError, list_upload_files, push_to_hub
from driftin.unet import UNet

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_folder(root: Path) -> Path:
    """A tiny weights folder as `train export` + eval + card leave it, plus files that must not be uploaded."""
    torch.manual_seed(0)
    folder = root / "drift-tiny"
    model = UNet(preset("tiny", num_classes=10, zero_init_out=False))
    tc = {"objective": "drift", "preset": "tiny", "steps": 200, "batch_size": 64, "out": str(root / "run")}
    save_pretrained(model, folder, {"objective": "drift", "steps": 200, "train_config": tc})
    (folder / "eval.json").write_text(json.dumps({"drift_steps1_g1": {"fd": 12.5, "precision": 0.6, "recall": 0.5,
                                                                      "n": 50000, "method": "drift", "steps": 1, "guidance": 1.0}}))
    (folder / "README.md").write_text("---\nlibrary_name: driftin\nlicense: mit\n---\n# drift-tiny\n")
    (folder / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "img_per_s": 100.0}) + "\n" for s in (10, 20)))
    (folder / "eval.json.tmp4242").write_text("partial")  # an interrupted eval write
    (folder / "checkpoint.pt").write_bytes(b"\x80\x04pickle")  # resume state never goes to the Hub
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return folder


EXPECTED = ["README.md", "config.json", "eval.json", "model.safetensors", "train_log.jsonl"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("pub"))


# ------------------------------------------------------------------ a local stand-in of the Hub API
class FakeHub:
    """Just enough of the Hub HTTP API for HfApi.create_repo / create_branch / upload_folder (huggingface_hub
    0.2x-2.x): every file is declared "regular" in preupload, so contents come base64 in the ndjson commit."""

    def __init__(self):
        self.calls, self.repos, self.branches, self.files = [], {}, set(), {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):
                hub.calls.append(("GET", self.path, self.headers.get("authorization")))
                self._reply(404, {"error": f"not implemented in the stand-in: GET {self.path}"})

            def do_HEAD(self):
                hub.calls.append(("HEAD", self.path, self.headers.get("authorization")))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                path = unquote(urlsplit(self.path).path)
                body = self._body()
                hub.calls.append(("POST", path, self.headers.get("authorization")))
                parts = path.strip("/").split("/")
                if path == "/api/repos/create":
                    d = json.loads(body)
                    rid = f"{d.get('organization') or 'me'}/{d['name']}"
                    url = f"http://{self.headers['host']}/{rid}"
                    if rid in hub.repos:
                        return self._reply(409, {"error": "You already created this model repo", "url": url})
                    hub.repos[rid] = d
                    hub.branches.add((rid, "main"))
                    return self._reply(200, {"url": url, "name": rid, "id": rid})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if len(parts) >= 5 and parts[:2] == ["api", "models"]:
                    rid, op, rev = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                    if rid not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    if op == "branch":
                        if (rid, rev) in hub.branches:
                            return self._reply(409, {"error": "Branch already exists"})
                        hub.branches.add((rid, rev))
                        return self._reply(200, {})
                    if (rid, rev) not in hub.branches:
                        return self._reply(404, {"error": f"Revision not found: {rev}"})
                    if op == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                            "oid": None} for f in files], "commitOid": "0" * 40})
                    if op == "commit":
                        header = None
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "header":
                                header = item["value"]
                            elif item["key"] == "file":
                                v = item["value"]
                                assert v.get("encoding", "base64") == "base64"
                                hub.files[(rid, rev, v["path"])] = base64.b64decode(v["content"])
                            else:  # lfsFile / deletedFile: the stand-in only allows regular files
                                return self._reply(400, {"error": f"unexpected commit item {item['key']}"})
                        oid = hashlib.sha1(body).hexdigest()
                        hub.calls.append(("COMMIT", rid, rev, header and header.get("summary")))
                        return self._reply(200, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                                                 "commitUrl": f"http://{self.headers['host']}/{rid}/commit/{oid}"})
                self._reply(404, {"error": f"not implemented in the stand-in: POST {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------- tests
def test_dry_run_lists_exactly_the_uploaded_files(folder, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    res = push_to_hub(folder, "me/driftin-drift-tiny", dry_run=True)  # no token needed, nothing sent
    assert [p for p, _ in res.files] == EXPECTED
    assert dict(res.files)["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    assert res.dry_run and res.commit_url is None

    from driftin.publish import main

    assert main(["push", str(folder), "--repo", "me/driftin-drift-tiny", "--dry-run", "--no-card"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")]
    assert listed == EXPECTED, out
    assert "nothing uploaded" in out


def test_sharded_folder_lists_every_shard(tmp_path):
    save_pretrained(UNet(preset("small")), tmp_path, {"objective": "ddpm"})
    files = [p for p, _ in list_upload_files(tmp_path)]
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) >= 2 and files == sorted(["config.json", "model.safetensors.index.json", *shards])


def test_not_a_weights_folder(tmp_path):
    with pytest.raises(PublishError, match="config.json"):
        push_to_hub(tmp_path, "me/x", dry_run=True)
    (tmp_path / "config.json").write_text(json.dumps({"model": preset("tiny").__dict__}))
    with pytest.raises(PublishError, match="safetensors"):
        push_to_hub(tmp_path, "me/x", dry_run=True)
    with pytest.raises(PublishError, match="repo id"):
        push_to_hub(tmp_path, "not-a-repo-id", dry_run=True)


DRIVER = r"""
import contextlib, io, json, os, sys
from huggingface_hub import constants
from driftin.publish import main

def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

folder = sys.argv[1]
res = {}
res["no_token"] = cli("push", folder, "--repo", "me/driftin-drift-tiny", "--no-card")
os.environ["HF_TOKEN"] = "hf_dummy_token"  # read per call, like a fresh `hf auth login`
res["push"] = cli("push", folder, "--repo", "me/driftin-drift-tiny", "--revision", "v1", "--no-card")
res["again"] = cli("push", folder, "--repo", "me/driftin-drift-tiny", "--revision", "v1", "--no-card")
# huggingface_hub >= 2 streams folders through its xet pipeline when hf_xet is installed: exercise that path too,
# with the default card handling (a folder without README.md gets a generated card naming the repo)
constants.HF_HUB_DISABLE_XET = False
res["pipelined"] = cli("push", sys.argv[2], "--repo", "me/second")
print("RESULT" + json.dumps(res))
"""


def test_push_to_local_hub_stand_in(folder, tmp_path):
    """One process, HF_ENDPOINT pointing at the stand-in: no token -> clear error and nothing sent; with a token the
    repo and the --revision branch are created and every file arrives intact; a second push to the existing repo and
    branch works; the xet pipeline of huggingface_hub 2.x (regular files) uploads the same files."""
    with FakeHub() as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        bare = tmp_path / "bare"
        shutil.copytree(folder, bare)
        (bare / "README.md").unlink()
        r = subprocess.run([sys.executable, "-c", DRIVER, str(folder), str(bare)], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=240)
        assert r.returncode == 0 and "RESULT" in r.stdout, r.stdout + r.stderr
        res = json.loads(r.stdout.split("RESULT", 1)[1])

        no_token = res["no_token"]
        assert no_token["rc"] == 1 and "hf auth login" in no_token["err"] and "HF_TOKEN" in no_token["err"], no_token
        for key in ("push", "again", "pipelined"):
            assert res[key]["rc"] == 0, (key, res[key])
        assert "commit:" in res["push"]["out"] and hub.url in res["push"]["out"]

        assert {"me/driftin-drift-tiny", "me/second"} == set(hub.repos)
        assert hub.repos["me/driftin-drift-tiny"]["organization"] == "me"
        assert ("me/driftin-drift-tiny", "v1") in hub.branches  # --revision created the branch
        for rid, rev, src in (("me/driftin-drift-tiny", "v1", folder), ("me/second", "main", bare)):
            got = {p: c for (r_, v_, p), c in hub.files.items() if (r_, v_) == (rid, rev)}
            assert sorted(got) == sorted(p for p, _ in list_upload_files(src)), rid
            for p, content in got.items():
                assert content == (src / p).read_bytes(), (rid, p)
        assert sorted(p for (r_, _, p) in hub.files if r_ == "me/driftin-drift-tiny") == EXPECTED
        assert {*EXPECTED, "training_curve.png"} <= {p for (r_, _, p) in hub.files if r_ == "me/second"}
        assert b"hf download me/second --local-dir weights/bare" in hub.files[("me/second", "main", "README.md")]
        assert sum(1 for c in hub.calls if c[0] == "COMMIT") == 3
        assert all(auth == "Bearer hf_dummy_token" for m, *_, auth in hub.calls if m == "POST")  # none before the token


def test_load_from_hub_cache_offline(folder, tmp_path, monkeypatch):
    """The layout `hf download` / snapshot_download leaves: blobs + snapshots/<commit>/ symlinks + refs/main."""
    cache = tmp_path / "hub"
    repo = cache / "models--me--driftin-drift-tiny"
    commit = "a" * 40
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for p, _ in list_upload_files(folder):
        data = (folder / p).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        try:
            (snap / p).symlink_to(os.path.relpath(blob, snap))
        except OSError:  # no symlinks (Windows without developer mode): hf copies files instead
            (snap / p).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    from huggingface_hub import constants

    from driftin.hub import load_pretrained

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # what HF_HUB_CACHE=<cache> sets at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # conftest: HF_HUB_OFFLINE=1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m, ref = load_pretrained("me/driftin-drift-tiny"), load_pretrained(folder)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x, None, 3), ref(x, None, 3)) and m.meta["objective"] == "drift" and m.meta["steps"] == 200
