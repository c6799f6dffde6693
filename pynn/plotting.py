"""plot_history: a PNG of the loss and metrics per epoch (matplotlib, an optional extra).

matplotlib is imported only when a plot is asked for, and drawn through its Agg canvas
directly (a Figure, not pyplot): no display is needed and the user's pyplot state and
chosen backend are left alone.
"""
import os

INSTALL_HINT = 'pip install "pynn[plot]"  (or: pip install matplotlib)'


def _history_dict(history):
    data = getattr(history, "history", history)
    if not isinstance(data, dict):
        raise TypeError("plot_history: expected a History (what fit returns) or its .history dict, "
                        f"received {type(history).__name__}")
    return data


def _panels(data):
    """[(title, [keys])]: loss first, then each other number (metrics, learning_rate) with
    its val_ twin in the same panel."""
    train = [k for k in data if not k.startswith("val_")]
    for k in data:                                # a val_ key without its training twin
        if k.startswith("val_") and k[4:] not in data:
            train.append(k)
    train.sort(key=lambda k: (k != "loss", list(data).index(k)))
    return [(k, [k] + (["val_" + k] if "val_" + k in data else [])) for k in train]


def plot_history(history, path, title=None, layers=False):
    """Draw `history` (a History or its dict) as a PNG at `path`: one panel for the loss
    (with val_loss), one per metric; returns the path.  layers=True adds a panel per
    ActivationMonitor quantity (all layers in one panel)."""
    data = _history_dict(history)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"plot_history needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    per_layer = {}
    plain = {}
    for key, values in data.items():
        if "/" in key:
            layer, quantity = key.split("/", 1)
            per_layer.setdefault(quantity, []).append((layer, values))
        else:
            plain[key] = values
    panels = [("plain", t, keys) for t, keys in _panels(plain)]
    if layers:
        panels += [("layers", q, series) for q, series in per_layer.items()]
    if not panels:
        raise ValueError("plot_history: the history holds nothing to plot (no epochs recorded)")
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (kind, name, content) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        if kind == "plain":
            for key in content:
                values = [float(v) for v in data[key]]
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, markersize=3,
                        label="validation" if key.startswith("val_") else "training",
                        linestyle="--" if key.startswith("val_") else "-")
        else:
            for layer, values in content:
                ax.plot(range(1, len(values) + 1), [float(v) for v in values], label=layer)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# ---- plot_model: the graph of layers -------------------------------------------------------------

def _graph_levels(model):
    """The model's layers by depth from the inputs (a layer at one more than the deepest of
    its inputs), in Keras's layer order within a level, and the edges between them."""
    nodes = model.nodes
    level, edges = {}, []
    for node in nodes:
        parents = [t._keras_history[0] for t in node.input_tensors]
        level[node.layer] = max([level.get(node.layer, 0)] +
                                [level.get(p, 0) + 1 for p in parents])
        edges += [(p, node.layer) for p in parents]
    rows = {}
    for layer in model.operations:
        rows.setdefault(level.get(layer, 0), []).append(layer)
    return [rows[k] for k in sorted(rows)], list(dict.fromkeys(edges))


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, rankdir="TB", expand_nested=False, dpi=96,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw a model's graph of layers as a PNG at `to_file` (Keras's `plot_model`, drawn
    with matplotlib instead of graphviz): one box per layer, with its name and type (and
    with show_shapes its output shape, with show_layer_activations its activation, with
    show_trainable whether it trains), arrows from each layer to the layers it feeds.
    Returns the path."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"plot_model needs matplotlib, which is not installed: {INSTALL_HINT}") \
            from None
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    model.ensure_graph(None, "plot_model")
    levels, edges = _graph_levels(model)

    def label(layer):
        parts = [f"{layer.name} ({type(layer).__name__})" if show_layer_names
                 else type(layer).__name__]
        if show_layer_activations and isinstance(getattr(layer, "activation", None), str):
            parts.append(f"activation: {layer.activation}")
        if show_shapes and layer.inbound_nodes:
            shape = layer.inbound_nodes[-1].output_tensors[0].shape
            parts.append("output: (" + ", ".join("None" if d is None else str(d) for d in shape) + ")")
        if show_dtype:
            parts.append("dtype: float32")
        if show_trainable:
            parts.append(f"trainable: {layer.trainable}")
        return "\n".join(parts)

    width = max(len(row) for row in levels)
    horizontal = rankdir == "LR"
    box_w, box_h = 3.2, 0.35 + 0.22 * (1 + show_shapes + show_layer_activations + show_dtype +
                                        show_trainable)
    gap_w, gap_h = 0.6, 0.6
    fig_w = width * (box_w + gap_w) if not horizontal else len(levels) * (box_w + gap_w)
    fig_h = len(levels) * (box_h + gap_h) if not horizontal else width * (box_h + gap_h)
    fig = Figure(figsize=(max(fig_w, 3), max(fig_h, 1.5)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, max(fig_w, 3))
    ax.set_ylim(0, max(fig_h, 1.5))
    ax.axis("off")
    centers = {}
    for li, row in enumerate(levels):
        for ri, layer in enumerate(row):
            offset = (width - len(row)) / 2
            if horizontal:
                cx = li * (box_w + gap_w) + (box_w + gap_w) / 2
                cy = fig_h - ((ri + offset) * (box_h + gap_h) + (box_h + gap_h) / 2)
            else:
                cx = (ri + offset) * (box_w + gap_w) + (box_w + gap_w) / 2
                cy = fig_h - (li * (box_h + gap_h) + (box_h + gap_h) / 2)
            centers[layer] = (cx, cy)
            ax.add_patch(FancyBboxPatch((cx - box_w / 2, cy - box_h / 2), box_w, box_h,
                                        boxstyle="round,pad=0.02", facecolor="#eef3fb",
                                        edgecolor="#3c6eb4"))
            ax.text(cx, cy, label(layer), ha="center", va="center", fontsize=8)
    depth = {layer: li for li, row in enumerate(levels) for layer in row}
    for src, dst in edges:
        (x0, y0), (x1, y1) = centers[src], centers[dst]
        if horizontal:
            start, end = (x0 + box_w / 2, y0), (x1 - box_w / 2, y1)
        else:
            start, end = (x0, y0 - box_h / 2), (x1, y1 + box_h / 2)
        # an edge that skips levels (a residual connection) bends around the boxes between
        bend = "arc3,rad=-0.45" if depth[dst] - depth[src] > 1 else "arc3,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                     color="#555555", connectionstyle=bend))
    folder = os.path.dirname(os.fspath(to_file))
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(to_file, dpi=dpi)
    return to_file
