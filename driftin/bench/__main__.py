"""Dispatcher: python -m driftin.bench <command> [args]. Each command is a module with main(argv)."""
import importlib
import sys

COMMANDS = {
    "kernel": ("driftin.bench.kernel", "drift-field implementations: time and memory"),
    "infer": ("driftin.bench.infer", "generator sampling throughput/latency"),  # driftin/bench/infer.py
    "train": ("driftin.bench.train", "training-step throughput and MFU: trainer step vs naive eager step"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m driftin.bench {" + ",".join(COMMANDS) + "} [args]")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:8s} {doc}")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    name = COMMANDS[argv[0]][0]
    try:  # lazy import: a command's dependencies are only loaded when it runs
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        print(f"{name} is not installed in this checkout")
        return 2
    return mod.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main() or 0)
