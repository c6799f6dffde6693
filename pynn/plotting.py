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
