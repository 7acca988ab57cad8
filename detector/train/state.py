"""The training state ``RUN/last.pt``: everything ``resume`` needs to continue a run exactly.

Model, weight average, optimizer, loss scaler, progress (epoch, step, images seen, best mAP,
elapsed time), the options and the spec, as plain tensors and numbers: written atomically
(a kill mid-write keeps the previous state) and read with ``torch.load(weights_only=True)``,
so a state file never runs pickled Python objects.
"""
from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import asdict

import torch

from ..errors import ParamError, UserError
from ..io.atomic import atomic_path
from .options import TrainOptions

STATE_VERSION = 1


def save_state(path: str, model, optimizer, scaler, progress: dict, opts: TrainOptions,
               spec, ema=None) -> None:
    state = {"version": STATE_VERSION, "model": model.state_dict(),
             "ema": ema.state_dict() if ema is not None else {},
             "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else {},
             "progress": dict(progress), "options": asdict(opts), "spec": spec.to_dict(),
             "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:    # a file object: a failed write stays an OSError
            torch.save(state, f)      # (chained), so a full disk is reported as such


def load_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise ParamError("resume", f"no training state at {path}")
    try:
        with warnings.catch_warnings():       # torch warns about pickle protocols: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:       # objects other than tensors: refused, not run
        why = str(e).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
        raise UserError(f"{path}: refused: not a training state of plain tensors and numbers "
                        f"({' '.join(why.split())[:120]}); pickled Python objects are never "
                        "loaded") from None
    except Exception as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{path}: unreadable training state ({why})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise UserError(f"{path}: not a FastDSC-YOLO training state (version {STATE_VERSION})")
    return state
