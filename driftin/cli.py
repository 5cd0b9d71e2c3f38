"""The `driftin` command: one entry point for the module CLIs.

    driftin train ...     (python -m driftin.train)      train a model, or `driftin train export RUN FOLDER`
    driftin sample ...    (python -m driftin.sample)     a PNG grid from weights
    driftin eval ...      (python -m driftin.eval)       FID / FD of a model or an image folder
    driftin publish ...   (python -m driftin.publish)    model card and Hub upload
    driftin app ...       (python app.py)                the live Gradio demo

Errors end the command with one line on stderr and exit code 1; `--debug` (or DRIFTIN_DEBUG=1) shows the traceback.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

# command -> (module with main(argv), one-line summary)
COMMANDS = {
    "train": ("driftin.train", "train a DDPM or drift model (CPU, one GPU or torchrun); `train export RUN FOLDER`"),
    "sample": ("driftin.sample", "sample a PNG grid from weights (a folder, a name under ./weights, or a Hub repo id)"),
    "eval": ("driftin.eval.__main__", "evaluate a model or an image folder against CIFAR-10 (needs the eval extra)"),
    "publish": ("driftin.publish", "write a model card, push a weights folder to the Hugging Face Hub"),
    "app": ("driftin.app", "the live demo: drift vs. DDPM side by side in the browser (needs the app extra)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return ("usage: driftin [--debug] [--version] COMMAND [ARGS...]\n\n"
            "One-step image generation by drifting, next to DDPM/DDIM (CIFAR-10).\n\ncommands:\n" + "\n".join(lines) +
            "\n\n`driftin COMMAND --help` shows a command's options. --debug: full traceback on errors (also DRIFTIN_DEBUG=1).\n")


def _debug_env() -> bool:
    return os.environ.get("DRIFTIN_DEBUG", "") not in ("", "0", "false")


def run(prog: str, fn: Callable[[list[str]], object], argv: list[str], debug: bool = False) -> int:
    """Call a module's main(argv) the way a command should end: its return code, or one error line and 1."""
    debug = debug or _debug_env()
    if "--debug" in argv:  # accepted after the command too (no module uses the name)
        argv = [a for a in argv if a != "--debug"]
        debug = True
    old = sys.argv[0]
    sys.argv[0] = prog  # argparse's usage lines name the command as typed
    try:
        rc = fn(argv)
    except SystemExit as e:  # argparse and the modules' own exits keep their code and message
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)  # SystemExit("message"): the module's own one-line error
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line instead of a traceback; --debug for the traceback
        if debug:
            raise
        msg = str(e).strip() or type(e).__name__
        if not isinstance(e, (ValueError, OSError, RuntimeError, LookupError)):
            msg = f"{type(e).__name__}: {msg}"
        return _fail(prog, " ".join(msg.split())[:2000], hint=True)  # one line, whatever the message
    finally:
        sys.argv[0] = old
    return rc if isinstance(rc, int) else 0


def _fail(prog: str, msg: str, hint: bool = False) -> int:
    print(f"{prog}: error: {msg}" + (" (--debug shows the traceback)" if hint else ""), file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] in ("--debug", "--version", "-V", "-h", "--help"):
        flag = argv.pop(0)
        if flag == "--debug":
            debug = True
        elif flag in ("--version", "-V"):
            from . import __version__

            print(f"driftin {__version__}")
            return 0
        else:
            print(usage(), end="")
            return 0
    if not argv:
        print(usage(), end="", file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"driftin: error: unknown command {cmd!r}; choose one of {', '.join(COMMANDS)} (driftin --help)", file=sys.stderr)
        return 2
    module = COMMANDS[cmd][0]
    prog = f"driftin {cmd}"
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # an extra is not installed (gradio for app, timm for train, ...)
        if debug or _debug_env():
            raise
        extra = {"app": "app", "train": "train", "eval": "eval", "publish": "train"}.get(cmd)
        hint = f"; install it with `pip install 'driftin[{extra}]'`" if extra else ""
        return _fail(prog, f"missing dependency {e.name or e}{hint}")
    return run(prog, mod.main, rest, debug)


if __name__ == "__main__":
    sys.exit(main())
