"""driftin.bench.profile: the profile summary and the copies table that says which tensors a step copies."""
import torch

from driftin.bench.profile import profile_calls


def test_profile_tables_name_the_shapes_a_step_copies(tmp_path):
    a, b = torch.randn(64, 48), torch.randn(16, 8)

    def step(i):
        a.t().contiguous()  # one copy of a [48, 64] view per call
        b.t().contiguous()
        b.t().contiguous()

    summary = profile_calls(step, calls=3, device="cpu", table_path=tmp_path / "p.txt")
    assert summary["calls"] == 3 and summary["wall_ms"] > 0 and summary["device_busy_ms"] is None
    text = (tmp_path / "p.txt").read_text()
    section = text.split("## copies by input shape")[1]
    rows = {line.split(" | ")[0]: line for line in section.splitlines() if line.startswith("| [[")}
    assert len(rows) == 2, section
    # aten::copy_(dst, src): both operands' shapes, and the call counts of each group
    big = next(r for k, r in rows.items() if "48, 64" in k)
    small = next(r for k, r in rows.items() if "8, 16" in k)
    assert big.split(" | ")[1] == "3" and small.split(" | ")[1] == "6"
