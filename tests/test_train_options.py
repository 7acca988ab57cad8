"""TrainOptions: bad values are refused with errors that name the field (the CLI shows the
flag), and a resumed run continues with the options it was started with."""
from __future__ import annotations

import dataclasses

import pytest

from detector.cli import flag_for
from detector.errors import ParamError
from detector.train.options import TrainOptions, check_options, resumed_options


def opts(**kw) -> TrainOptions:
    return TrainOptions(data="data.yaml", out="run", **kw)


@pytest.mark.parametrize("field,value,shown", [
    ("jitter", 0.5, "--jitter 0.5: must be in [0, 0.45]"),
    ("ema", 1.0, "--ema 1.0: the decay must be in [0, 1)"),
    ("batch", 0, "--batch 0: must be a positive multiple of accumulate (1)"),
    ("epochs", 0, "--epochs 0: must be at least 1"),
    ("val_every", 0, "--val-every 0: must be at least 1"),
    ("save_every", -1, "--save-every -1: must not be negative"),
    ("workers", -2, "--workers -2: must not be negative"),
    ("final_size", 100, "--final-size 100: must be a multiple of 32"),
    ("val_size", 8192, "--val-size 8192: must be a multiple of 32"),
    ("img_size", 33, "--img-size 33: must be a multiple of 32"),
    ("lr", 0.0, "--lr 0.0: must be positive"),
    ("mosaic", 1.5, "--mosaic 1.5: a probability, in [0, 1]"),
    ("iou_thresh", 0.0, "--iou-thresh 0.0: an IoU in (0, 1]"),
    ("burn_in", 1.5, "--burn-in 1.5: must be a fraction of the run in [0, 1]"),
    ("optimizer", "lion", "--optimizer lion: allowed values: sgd, adamw"),
    ("schedule", "linear", "--schedule linear: allowed values: steps, cosine"),
    ("amp", "fp8", "--amp fp8: allowed values: auto, on, off"),
    ("anchors", "kmeans", "--anchors kmeans: allowed values: spec, auto"),
    ("device", "tpu", "--device tpu: allowed values: auto, cpu, cuda"),
])
def test_a_bad_value_names_its_field(field, value, shown):
    with pytest.raises(ParamError) as e:
        check_options(opts(**{field: value}))
    assert e.value.param == field
    assert "--" not in str(e.value) and str(e.value).startswith(f"{field}=")
    assert e.value.render(flag_for(e.value.param)).startswith(shown)


def test_combinations():
    with pytest.raises(ParamError, match="accumulate") as e:
        check_options(opts(batch=10, accumulate=3))
    assert e.value.param == "batch"
    with pytest.raises(ParamError, match="needs final_size") as e:
        check_options(opts(final_epochs=2))
    assert e.value.param == "final_epochs"
    check_options(opts(final_epochs=2, final_size=320, batch=12, accumulate=3, epochs=1,
                       img_size=256, val_size=416, lr=0.01, burn_in=0.0, workers=0))
    check_options(opts())                        # the defaults are valid


def test_resumed_options_are_the_saved_ones_with_this_calls_workers_and_epochs():
    started = opts(epochs=5, batch=16, ema=0.99, schedule="cosine", workers=3, amp="on",
                   iou_thresh=0.5)
    saved = dataclasses.asdict(started)
    given = opts(epochs=None, batch=64, ema=0.0, workers=1, resume=True)
    got = resumed_options(given, saved)
    assert (got.epochs, got.batch, got.ema, got.schedule, got.amp, got.iou_thresh) == \
        (5, 16, 0.99, "cosine", "on", 0.5)
    assert got.workers == 1 and got.resume
    assert resumed_options(opts(epochs=8, resume=True), saved).epochs == 8
    old = {k: v for k, v in saved.items() if k not in ("amp", "iou_thresh")}
    old["dropped_field"] = 1                    # fields this version does not know are ignored
    assert resumed_options(given, old).amp == "off"    # before mixed precision: fp32
    assert resumed_options(given, old).iou_thresh == 1.0   # before: the best anchor only
