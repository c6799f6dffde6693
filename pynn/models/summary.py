"""model.summary(): the table Keras 3 prints (keras/src/utils/summary_utils.py), drawn
with the same box characters but without rich: layer (type), output shape, parameter
count, "Connected to" for graphs that are not a plain chain, an optional "Trainable"
column, nested models expanded on request, and the totals with their sizes in bytes."""
import shutil

from ..layers.base import shape_text
from ..layers.input_layer import InputLayer


def readable_memory_size(size):
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    for unit in units:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {units[-1]}"


def _count(weights):
    return int(sum(v.size for v in weights))


def _output_shape(layer):
    if layer.inbound_nodes:
        outs = layer.inbound_nodes[-1].output_tensors
        shapes = [shape_text(t.shape) for t in outs]
        return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"
    return "?"


def _is_chain(model):
    """Keras's test: one node per depth, each with one input, and no layer called twice."""
    if type(model).__name__ == "Sequential":
        return True
    seen, consumers = set(), {}
    for node in model.nodes:
        if len(node.input_tensors) > 1 or node.layer in seen:
            return False
        seen.add(node.layer)
        for t in node.input_tensors:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
    return all(c == 1 for c in consumers.values()) and len(model.inputs) == 1 and \
        len(model.outputs) == 1


def _connections(layer, model_nodes):
    parts = []
    for node in layer.inbound_nodes:
        if node not in model_nodes:
            continue
        for t in node.input_tensors:
            src, node_index, tensor_index = t._keras_history
            parts.append(f"{src.name}[{node_index}][{tensor_index}]")
    return ", ".join(parts) or "-"


def _wrap(text, width):
    """The lines of a cell: long text folds onto more lines (at ", " or a space where it
    can), as rich's tables fold it in Keras's summary."""
    lines = []
    while len(text) > width:
        cut = max(text.rfind(", ", 0, width - 1) + 1, text.rfind(" ", 0, width))
        cut = cut if cut > 0 else width
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return lines + [text]


def _fit(text, width, align):
    return text.rjust(width) if align == "right" else \
        text.center(width) if align == "center" else text.ljust(width)


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False,
                  show_trainable=False, layer_range=None):
    print_fn = print_fn or print
    chain = _is_chain(model)
    if chain:
        default_length, positions = 88, positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        align = ["left", "left", "right"]
        layers = model.layers
    else:
        default_length, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        align = ["left", "left", "right", "left"]
        layers = model.operations
    if show_trainable:
        default_length += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        align.append("center")
    default_length = min(default_length, shutil.get_terminal_size().columns - 4)
    line_length = line_length or default_length
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    widths, current = [], 0
    for pos in positions:
        width = pos - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current = pos
    inner = [w - 3 for w in widths]          # a border and a space each side
    inner[-1] -= 1
    model_nodes = set(model.nodes)
    if layer_range is not None:
        names = [l.name for l in layers]
        if not (isinstance(layer_range, (list, tuple)) and len(layer_range) == 2 and
                all(n in names for n in layer_range)):
            raise ValueError(f"summary: layer_range must be two layer names of the model, "
                             f"received {layer_range!r}")
        layers = layers[names.index(layer_range[0]):names.index(layer_range[1]) + 1]

    def fields(layer, prefix=""):
        if not layer.built:
            params = "0 (unbuilt)"
        else:
            params = f"{layer.count_params():,}"
        kind = "Functional" if type(layer).__name__ == "Model" else type(layer).__name__
        row = [f"{prefix}{layer.name} ({kind})", _output_shape(layer), params]
        if not chain:
            row.append(_connections(layer, model_nodes))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows_of(layer, level=0):
        prefix = "   " * level + "└ " if level else ""
        rows = [fields(layer, prefix)]
        if expand_nested and hasattr(layer, "layers") and layer.layers:
            for sub in (layer.layers if type(layer).__name__ == "Sequential"
                        else [l for l in layer.layers if not isinstance(l, InputLayer)]):
                rows.extend(rows_of(sub, level + 1))
        return rows

    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in inner) + right

    out = [f'Model: "{model.name}"', line("┏", "┳", "┓", "━"),
           "┃" + "┃".join(" " + _fit(h, w, a) + " " for h, w, a in zip(header, inner, align)) + "┃",
           line("┡", "╇", "┩", "━")]
    body = [r for layer in layers for r in rows_of(layer)]
    for i, row in enumerate(body):
        cells = [_wrap(c, w) for c, w in zip(row, inner)]
        for k in range(max(len(c) for c in cells)):
            out.append("│" + "│".join(" " + _fit(c[k] if k < len(c) else "", w, a) + " "
                                      for c, w, a in zip(cells, inner, align)) + "│")
        if i < len(body) - 1:
            out.append(line("├", "┼", "┤", "─"))
    out.append(line("└", "┴", "┘", "─"))
    trainable = _count(model.trainable_weights)
    frozen = _count(model.non_trainable_weights)
    optimizer = model.optimizer if model.compiled else None
    opt_count = optimizer.count_params() if optimizer is not None and optimizer.built else 0
    total = trainable + frozen + opt_count
    out.append(f" Total params: {total:,} ({readable_memory_size(total * 4)})")
    out.append(f" Trainable params: {trainable:,} ({readable_memory_size(trainable * 4)})")
    out.append(f" Non-trainable params: {frozen:,} ({readable_memory_size(frozen * 4)})")
    if opt_count:
        out.append(f" Optimizer params: {opt_count:,} ({readable_memory_size(opt_count * 4)})")
    print_fn("\n".join(out))
