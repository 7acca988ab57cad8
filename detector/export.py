"""Export a model: ONNX (TensorRT / ONNX Runtime), darknet .cfg + .weights, or a lowered plan."""
from __future__ import annotations

import os
from typing import List, Optional

from .engine.model_file import read_model
from .engine.onnx_graph import attach_metadata, plan_to_onnx, region_metadata
from .engine.plan import lower
from .errors import ParamError, UserError
from .io.atomic import atomic_write_bytes
from .io.darknet_cfg import write_cfg
from .io.darknet_weights import write_weights
from .models.checks import check_input_size

FORMATS = ("onnx", "darknet", "plan")


def export(weights: str, fmt: str, out: str, cfg: Optional[str] = None, names=None,
           img_size: Optional[int] = None, dynamic_batch: bool = False,
           pointwise: str = "conv") -> List[str]:
    """Write ``weights`` in format ``fmt`` (onnx | darknet | plan); returns the paths written."""
    if fmt not in FORMATS:
        raise ParamError("fmt", f"allowed values: {', '.join(FORMATS)}", value=fmt)
    model = read_model(weights, cfg, names)
    if fmt == "darknet":
        if model.state is None:
            raise UserError(f"{weights}: a lowered plan has BN folded in; export darknet files "
                            "from the checkpoint it came from")
        stem = out[:-len(".weights")] if out.endswith(".weights") else \
            out[:-len(".cfg")] if out.endswith(".cfg") else out
        spec = model.spec if img_size is None else model.spec.replace(size=check_input_size(img_size))
        write_cfg(spec, stem + ".cfg")
        write_weights(stem + ".weights", spec, model.state)
        return [stem + ".cfg", stem + ".weights"]
    if model.plan is not None:
        plan = model.plan
        if img_size and img_size != plan.size:
            raise ParamError("img_size", f"{weights} is a plan lowered for {plan.size} px",
                             value=img_size)
    else:
        plan = lower(model.spec, model.state, check_input_size(img_size or model.spec.size),
                     model.names)
    if fmt == "plan":
        plan.save(out)
        return [out]
    proto = plan_to_onnx(plan, pointwise, dynamic_batch=dynamic_batch,
                         name=os.path.splitext(os.path.basename(out))[0])
    attach_metadata(proto, region_metadata(plan))
    atomic_write_bytes(out, proto.SerializeToString())
    return [out]
