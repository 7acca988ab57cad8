"""train/ema.py: the weight average follows the documented rate, is what `applied` puts in the
model, and gives the raw weights back afterwards, also after an error."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from detector.train.ema import WeightAverage  # noqa: E402


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_the_average_moves_at_the_documented_rate():
    m = small_model()
    w0 = m[0].weight.detach().clone()
    ema = WeightAverage(m, decay=0.9)
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update(m)                                  # t = 1: d = min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.avg["0.weight"], d * w0 + (1 - d) * (w0 + 1))
    for _ in range(200):                           # constant weights: the average reaches them
        ema.update(m)
    assert ema.rate() == 0.9
    torch.testing.assert_close(ema.avg["0.weight"], w0 + 1)
    assert "1.num_batches_tracked" not in ema.avg  # integer buffers are not averaged
    assert "1.running_mean" in ema.avg


def test_applied_swaps_the_average_in_and_the_raw_weights_back_even_after_an_error():
    m = small_model()
    ema = WeightAverage(m, decay=0.5)
    raw = {k: v.clone() for k, v in m.state_dict().items()}
    ema.avg["0.weight"].fill_(3.0)
    with pytest.raises(RuntimeError):
        with ema.applied(m):
            assert torch.all(m[0].weight == 3.0)
            raise RuntimeError("validation failed")
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, raw[k])


def test_state_round_trip_and_bad_decay():
    m = small_model()
    a = WeightAverage(m, 0.99)
    for _ in range(3):
        a.update(m)
    b = WeightAverage(small_model(), 0.5)
    b.load_state_dict(a.state_dict())
    assert (b.decay, b.updates) == (0.99, 3)
    for k in a.avg:
        torch.testing.assert_close(a.avg[k], b.avg[k])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(m, 1.0)
