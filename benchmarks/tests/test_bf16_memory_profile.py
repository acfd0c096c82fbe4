"""benchmarks/bf16_memory_profile.py's arithmetic on hand-made timelines and a tiny model."""
import torch

from benchmarks import bf16_memory_profile as mp

GIB = 1024 ** 3


def test_the_rise_is_measured_from_the_first_row_and_split_by_category():
    # columns: unknown, input, temporary, activation, gradient, autograd_detail, parameter, optimizer_state
    first = [0, 0, 0, 0, 0, 0, 4 * GIB, 8 * GIB]  # what existed before the steps (seen in them)
    mid = [0, 0, GIB, 2 * GIB, 0, 0, 4 * GIB, 8 * GIB]  # +3 GiB: the peak
    late = [0, 0, 0, GIB, GIB // 2, 0, 4 * GIB, 8 * GIB]  # +1.5 GiB
    peak = mp.timeline_peak([[1, 2, 3], [first, mid, late]])
    assert peak["rise_gib"] == 3.0
    assert peak["rise_by_category_gib"] == {"temporary": 1.0, "activation": 2.0}


def test_a_timeline_that_only_falls_rises_by_nothing():
    first = [GIB, 0, 0, 0, 0, 0, 0, 0]
    peak = mp.timeline_peak([[1, 2], [first, [0] * 8]])
    assert peak["rise_gib"] == 0.0 and peak["rise_by_category_gib"] == {}


def test_persistent_memory_counts_parameters_and_adam_state_exactly():
    model = torch.nn.Linear(10, 3)  # 33 parameters
    opt = torch.optim.Adam(model.parameters())
    assert mp.persistent_gib(model, opt) * GIB == 33 * 4  # no state before the first step
    model(torch.ones(2, 10)).sum().backward()
    opt.step()
    # Adam adds exp_avg and exp_avg_sq per parameter (fp32) and a step counter per tensor (a scalar)
    steps = sum(s["step"].numel() * s["step"].element_size() for s in opt.state.values())
    assert mp.persistent_gib(model, opt) * GIB == 3 * 33 * 4 + steps
