"""`python -m pynn`: the main job.  Trains a network on the bundled handwritten digits
and prints its accuracy on test images it has never seen; then saves the trained model
and a plot of its training history in the --output folder.

`python -m pynn export MODEL.pynn OUT.onnx` writes a saved model as ONNX instead."""
import argparse
import os
import sys
import time

import numpy as np


def build_mlp(pynn):
    return pynn.Sequential([
        pynn.layers.Input((64,)),
        pynn.layers.Dense(128, activation="relu"),
        pynn.layers.Dense(64, activation="relu"),
        pynn.layers.Dense(10, activation="softmax"),
    ], name="digits_mlp")


def build_cnn(pynn):
    """A small CNN for 8x8x1 digits: two 3x3 convolutions and a pooling step, a third
    convolution and pooling, then dropout and a dense softmax classifier."""
    L = pynn.layers
    return pynn.Sequential([
        L.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(64, activation="relu"),
        L.Dense(10, activation="softmax"),
    ], name="digits_cnn")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m pynn",
        description="Train a neural network on the handwritten digits bundled with pynn "
                    "(1,437 training and 360 test images of 8x8 pixels) and report its test accuracy.")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training data (default 30)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per training step (default 32)")
    p.add_argument("--backend", default=None, choices=["cpu", "numpy", "cuda"],
                   help="what computes: 'cpu' (pynn's C kernels, default), 'numpy' (the reference) "
                        "or 'cuda' (an NVIDIA GPU, needs pip install \"pynn[cuda]\")")
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn"],
                   help="network to train: 'mlp' (dense, default) or 'cnn' (convolutional, on the "
                        "digits as 8x8x1 images)")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, shuffling); default 0")
    p.add_argument("--threads", type=int, default=None, help="threads for the C kernels")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="progress output")
    add_output_arguments(p)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, received {args.epochs}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, received {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, received {args.threads}")
    return args


def export_main(argv):
    """`python -m pynn export MODEL OUT.onnx [--opset N]`: a saved model (.pynn, or a
    .keras file pynn reads) as an ONNX model for serving."""
    p = argparse.ArgumentParser(prog="python -m pynn export",
                                description="Export a saved pynn model to ONNX (needs "
                                            'pip install "pynn[onnx]").')
    p.add_argument("model", help="the saved model (model.save), e.g. digits_mlp.pynn")
    p.add_argument("output", help="the ONNX file to write, e.g. digits_mlp.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    args = p.parse_args(argv)
    import pynn
    try:
        model = pynn.load_model(args.model, compile=False)
        model.export(args.output, format="onnx", opset=args.opset)
    except (OSError, ValueError, ImportError) as exc:
        print(f"python -m pynn export: {exc}", file=sys.stderr)
        return 2
    print(f"Exported {args.model} to {args.output} (ONNX)")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":
        return export_main(argv[1:])
    args = parse_args(argv)
    import pynn

    if args.threads:
        pynn.set_num_threads(args.threads)
    pynn.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = pynn.datasets.digits.load_data()
    # Pixel intensities 0..16 -> 0..1; each 8x8 image is a vector of 64 inputs for the
    # MLP, an 8x8 image with one channel (NHWC) for the CNN.
    shape = (-1, 8, 8, 1) if args.model == "cnn" else (-1, 64)
    x_train = x_train.reshape(shape).astype(np.float32) / 16.0
    x_test = x_test.reshape(shape).astype(np.float32) / 16.0

    model = build_cnn(pynn) if args.model == "cnn" else build_mlp(pynn)
    try:
        model.compile(optimizer=pynn.optimizers.Adam(learning_rate=0.001),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      backend=args.backend)
    except (RuntimeError, ValueError) as exc:     # e.g. --backend cuda without a usable GPU
        print(f"python -m pynn: {exc}", file=sys.stderr)
        return 2
    model.summary()
    print(f"Training on {len(x_train)} digits ({args.epochs} epochs, batch {args.batch_size}, "
          f"backend {model.engine.backend.name}, {pynn.get_num_threads()} threads)")
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=args.verbose)
    elapsed = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Trained in {elapsed:.2f} s")
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f} on {len(x_test)} unseen digits")
    save_outputs(pynn, model, args.output)
    return 0


# ---- what the run leaves behind (--output) ------------------------------------------------------

def add_output_arguments(p):
    p.add_argument("--output", default="pynn_output", metavar="DIR",
                   help="folder for the trained model (<model name>.pynn, reload it with "
                        "pynn.load_model) and the plot of its training history (history.png); "
                        "created if missing; default ./pynn_output")
    p.epilog = ("After training, the model is saved as DIR/<model name>.pynn (reload it with "
                "pynn.load_model(path)) and its training history plotted in DIR/history.png "
                '(the plot needs matplotlib: pip install "pynn[plot]").')


def save_outputs(pynn, model, folder):
    """Save the trained model and its history plot in `folder`, saying where."""
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, f"{model.name}.pynn")
    model.save(model_path)
    print(f"Saved the trained model to {model_path} (load it with pynn.load_model)")
    plot_path = os.path.join(folder, "history.png")
    try:
        pynn.utils.plot_history(model.history, plot_path, title=f"{model.name}: training history")
    except ImportError:
        print("No plot of the training history: matplotlib is not installed "
              '(pip install "pynn[plot]" to get history.png)')
    else:
        print(f"Saved the plot of the training history to {plot_path}")


if __name__ == "__main__":
    sys.exit(main())
