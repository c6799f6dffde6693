"""Models leaving pynn: `model.export(path, format="onnx")` (onnx.py)."""

FORMATS = ("onnx",)


def export_model(model, filepath, format="onnx", opset=None, input_signature=None):
    if format != "onnx":
        raise ValueError(f"Model '{model.name}'.export: unknown format {format!r}; pynn exports "
                         f"{', '.join(map(repr, FORMATS))} (Keras's 'tf_saved_model' needs "
                         "TensorFlow)")
    from . import onnx as onnx_export
    return onnx_export.export_onnx(model, filepath, opset=opset, input_signature=input_signature)
