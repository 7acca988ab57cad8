"""The recipe a run gets (a table of cases: length, starting weights, device -> recipe), how
explicit fields win over it, and the fit of a run's length to a time budget."""
from __future__ import annotations

import math

import pytest

from detector.train.budget import (Costs, auto_val_every, fit_budget, past_deadline,
                                   run_seconds, validations)
from detector.train.options import TrainOptions
from detector.train.recipe import (FAST_IOU_THRESH, LONG_RUN, MOSAIC_EPOCHS, RunFacts,
                                   apply_recipe, choose_recipe, describe_recipe, fast_batch,
                                   nominal_iterations)

VOC_TRAINVAL = 16551            # VOC2007 + VOC2012 trainval images (data/voc.yaml's train)


@pytest.mark.parametrize("iterations,start,device,name,optimizer,schedule,batch,anchors,ema", [
    # short runs and runs from scratch: the fast recipe; the device's batch (8 on a CPU, 16 on
    # a GPU), smaller where the run would make fewer than 4000 updates
    (1000, "random", "cpu", "fast", "adamw", "cosine", 8, "auto", 0.999),
    (1000, "random", "cuda", "fast", "adamw", "cosine", 16, "auto", 0.998),
    (375, "random", "cpu", "fast", "adamw", "cosine", 4, "auto", 0.9995),
    (375, "random", "cuda", "fast", "adamw", "cosine", 4, "auto", 0.9995),
    (999, "random", "cuda", "fast", "adamw", "cosine", 8, "auto", 0.999),
    (None, "random", "cpu", "fast", "adamw", "cosine", 8, "auto", 0.999),
    (80200, "random", "cuda", "fast", "adamw", "cosine", 16, "auto", 0.998),
    (2000, "backbone", "cpu", "fast", "adamw", "cosine", 8, "auto", 0.999),
    (2000, "detector", "cuda", "fast", "adamw", "cosine", 16, "spec", 0.998),
    (None, "detector", "cuda", "fast", "adamw", "cosine", 16, "spec", 0.998),
    (LONG_RUN - 1, "detector", "cuda", "fast", "adamw", "cosine", 16, "spec", 0.998),
    # long fine-tunes of pretrained weights: darknet's recipe (the spec's batch, lr, anchors)
    (LONG_RUN, "detector", "cuda", "darknet", "sgd", "steps", None, "spec", 0.0),
    (LONG_RUN, "backbone", "cpu", "darknet", "sgd", "steps", None, "spec", 0.0),
    (80200, "detector", "cpu", "darknet", "sgd", "steps", None, "spec", 0.0),
])
def test_the_recipe_of_each_kind_of_run(iterations, start, device, name, optimizer, schedule,
                                        batch, anchors, ema):
    recipe, why = choose_recipe(RunFacts(iterations, start, device))
    assert (recipe.name, recipe.optimizer, recipe.schedule, recipe.batch, recipe.anchors,
            recipe.ema) == (name, optimizer, schedule, batch, anchors, ema)
    assert f"{iterations} iterations" in why and device in why
    if name == "fast":
        assert (recipe.multiscale, recipe.jitter, recipe.hsv, recipe.burn_in) == \
            (False, 0.1, False, 0.02)
        # more than one anchor learns each truth, but in a pretrained detection head
        assert recipe.iou_thresh == (1.0 if anchors == "spec" else FAST_IOU_THRESH) and \
            0 < FAST_IOU_THRESH < 1
    else:
        assert (recipe.multiscale, recipe.jitter, recipe.hsv, recipe.lr, recipe.burn_in) == \
            (True, None, True, None, None)
        assert recipe.iou_thresh == 1.0            # darknet's region layer: the best anchor


def test_the_two_runs_of_the_documentation():
    """yolov2-tiny-voc-fastdsc from scratch, 30 epochs of the 800-image synthetic set on the
    CPU: the fast recipe; yolov2-voc-fastdsc from a converted darknet model, 40 VOC epochs on
    a GPU: darknet's."""
    tiny, why = choose_recipe(RunFacts(nominal_iterations(30 * 800), "random", "cpu",
                                       epochs=30))
    assert tiny.name == "fast" and "375 iterations" in why and "from random weights" in why
    assert (tiny.batch, tiny.optimizer, tiny.mosaic, tiny.lr) == (4, "adamw", 1.0, 0.004)
    assert "mosaics: 30 epochs" in why
    voc, why = choose_recipe(RunFacts(nominal_iterations(40 * VOC_TRAINVAL), "detector", "cuda",
                                      epochs=40))
    assert voc.name == "darknet" and "10345 iterations" in why and "long fine-tune" in why
    assert voc.mosaic == 0.0 and "mosaic" not in why


@pytest.mark.parametrize("iterations,start,timed,epochs,mosaic", [
    (375, "random", False, 30, 1.0),            # the same 800 images 30 times
    (375, "random", False, MOSAIC_EPOCHS, 1.0),
    (375, "random", False, 19.9, 0.0),
    (374, "random", True, 6, 0.0),              # 15 minutes over 4000 images
    (374, "random", True, None, 0.0),           # a timed run before it is measured
    (2000, "detector", False, 25, 1.0),         # a short fine-tune over a small set
    (LONG_RUN, "detector", False, 40, 0.0),     # darknet's recipe has none
])
def test_mosaics_for_runs_that_see_their_images_many_times(iterations, start, timed, epochs,
                                                           mosaic):
    recipe, why = choose_recipe(RunFacts(iterations, start, "cpu", timed=timed, epochs=epochs))
    assert recipe.mosaic == mosaic
    assert ("mosaics:" in why) == bool(mosaic)


def test_iterations_are_counted_in_batches_of_64_images():
    assert nominal_iterations(1) == 1 and nominal_iterations(64) == 1
    assert nominal_iterations(65) == 2 and nominal_iterations(0) == 1


def test_smaller_batches_only_below_the_updates_a_run_needs():
    assert [fast_batch("cpu", n) for n in (None, 500, 499, 250, 249, 1)] == [8, 8, 4, 4, 4, 4]
    assert [fast_batch("cuda", n) for n in (1000, 999, 500, 499)] == [16, 8, 8, 4]


def test_unknown_start_is_refused():
    with pytest.raises(ValueError, match="random, backbone, detector"):
        choose_recipe(RunFacts(10, "imagenet", "cpu"))


def test_fields_that_are_set_win_over_the_recipe():
    recipe, _ = choose_recipe(RunFacts(1000, "random", "cpu"))
    given = TrainOptions(data="d", out="o", optimizer="sgd", lr=0.01, hsv=True, ema=0.0,
                         iou_thresh=1.0, anchors="auto")
    opts, fields_given = apply_recipe(given, recipe, spec_batch=64)
    assert fields_given == ["optimizer", "lr", "ema", "hsv", "iou_thresh", "anchors"]
    assert (opts.optimizer, opts.lr, opts.hsv, opts.ema) == ("sgd", 0.01, True, 0.0)
    assert (opts.schedule, opts.batch, opts.multiscale, opts.jitter, opts.anchors,
            opts.burn_in) == ("cosine", 8, False, 0.1, "auto", 0.02)
    line = describe_recipe(recipe, opts, fields_given)
    assert line.startswith("fast (SGD (set), lr 0.01 (set), cosine, burn-in 0.02, no weight "
                           "average (set), batch 8, fixed size, jitter 0.1, colour distortion "
                           "(set), no mosaic, truths on their best anchor (set), anchors fitted "
                           "(set))"), line
    assert given.optimizer == "sgd" and given.batch is None      # the given options stay


def test_auto_is_not_a_value_that_is_set():
    recipe, _ = choose_recipe(RunFacts(LONG_RUN, "detector", "cuda"))
    opts, fields_given = apply_recipe(TrainOptions(data="d", out="o"), recipe, spec_batch=64)
    assert fields_given == []
    assert (opts.optimizer, opts.schedule, opts.batch, opts.lr, opts.ema) == \
        ("sgd", "steps", 64, None, 0.0)
    assert "lr the spec's" in describe_recipe(recipe, opts, fields_given)
    assert opts.iou_thresh == 1.0
    assert "truths on their best anchor" in describe_recipe(recipe, opts, [])


def test_the_recipe_batch_splits_into_the_micro_batches_of_a_step():
    recipe, _ = choose_recipe(RunFacts(1000, "random", "cpu"))
    opts, _ = apply_recipe(TrainOptions(data="d", out="o", accumulate=3), recipe, 64, split=3)
    assert opts.batch == 9
    opts, _ = apply_recipe(TrainOptions(data="d", out="o", batch=12), recipe, 64, split=5)
    assert opts.batch == 12                                     # a set batch is not changed


# ---- the time budget --------------------------------------------------------------------------

COSTS = Costs(step=0.1, final_step=0.2, validation=2.0, epoch_end=0.3)


def test_the_fit_is_the_longest_run_that_ends_within_the_budget():
    fit = fit_budget(300.0, 50, COSTS)
    assert fit.seconds <= 300.0
    assert run_seconds(fit.steps + 1, 50, COSTS) > 300.0
    assert fit.epochs == math.ceil(fit.steps / 50)
    assert fit.val_every == auto_val_every(fit.epochs)
    # what the seconds are: steps, about 4 validations (and the last), epoch ends
    expected = fit.steps * 0.1 + validations(fit.epochs, fit.val_every) * 2.0 + fit.epochs * 0.3
    assert fit.seconds == pytest.approx(expected)
    assert 300.0 - fit.seconds < 0.1 + 2.0 + 0.3       # no room left for one more step


def test_a_partial_last_epoch_and_final_size_steps():
    # 10 steps per epoch; the last epoch (partial) trains at the final size, twice the cost
    seconds = run_seconds(25, 10, COSTS, final_epochs=1, val_every=1)
    assert seconds == pytest.approx(20 * 0.1 + 5 * 0.2 + 3 * 2.0 + 3 * 0.3)
    seconds = run_seconds(25, 10, COSTS, final_epochs=2, val_every=3)
    assert seconds == pytest.approx(10 * 0.1 + 15 * 0.2 + 1 * 2.0 + 3 * 0.3)
    fit = fit_budget(100.0, 10, COSTS, final_epochs=1, val_every=2)
    assert fit.val_every == 2 and fit.seconds <= 100.0


def test_validations_of_a_run():
    assert validations(12, 3) == 4 and validations(13, 4) == 4 and validations(1, 1) == 1
    assert auto_val_every(12) == 3 and auto_val_every(3) == 1 and auto_val_every(13) == 4


def test_a_budget_without_room_for_one_step_and_its_validation():
    assert fit_budget(2.2, 10, COSTS) is None
    assert fit_budget(2.5, 10, COSTS).steps == 2


def test_the_deadline_leaves_room_for_the_last_validation():
    assert not past_deadline(97.0, 100.0, COSTS)
    assert past_deadline(97.8, 100.0, COSTS)


def test_a_timed_run_keeps_the_devices_batch():
    """In a fixed time smaller batches train on fewer images: only runs of fixed length get
    them."""
    short = nominal_iterations(15 * 800)
    assert fast_batch("cpu", short) == 4 and fast_batch("cpu", short, timed=True) == 8
    assert fast_batch("cuda", short, timed=True) == 16
    timed, why = choose_recipe(RunFacts(short, "random", "cpu", timed=True))
    fixed, _ = choose_recipe(RunFacts(short, "random", "cpu"))
    assert (timed.batch, timed.ema, fixed.batch) == (8, 0.999, 4) and "not 8" not in why
