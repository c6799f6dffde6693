"""Seeing inside a network: which neurons fire for one handwritten digit, and what each
layer's units did during training.

    python examples/inside_the_network.py

1. Trains the digits MLP with an ActivationMonitor, which records per layer and per epoch
   the fraction of units that fire on a fixed sample of images, the dead units (firing on
   none of them), saturated sigmoid/tanh units and how far the epoch moved the weights,
   into the History beside the loss.
2. Takes one test image and prints, with model.activations(image), every layer's output:
   the hidden units that fired (a map of 128 and 64 cells) and the ten class probabilities.
"""
import numpy as np

import pynn
from pynn import layers


def show_image(image):
    shades = " .:-=+*#%@"
    for row in image:
        print("    " + "".join(shades[int(v * (len(shades) - 1) / 16)] * 2 for v in row))


def show_units(name, values, fired, per_row=32):
    """A map of a layer's units: '#' fired strongly, '+' fired, '.' silent."""
    top = values.max() if values.max() > 0 else 1.0
    cells = ["#" if f and v > 0.5 * top else "+" if f else "." for v, f in zip(values, fired)]
    print(f"  {name}: {int(fired.sum())} of {len(values)} units fired")
    for start in range(0, len(cells), per_row):
        print(f"    {start:3d}  " + "".join(cells[start:start + per_row]))
    strongest = np.argsort(values)[::-1][:5]
    print("    strongest: " + ", ".join(f"unit {i} ({values[i]:.2f})" for i in strongest))


def main():
    (x_train, y_train), (x_test, y_test) = pynn.datasets.digits.load_data()
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 16
    x_test_flat = x_test.reshape(len(x_test), -1).astype("float32") / 16

    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([
        layers.Input((64,)),
        layers.Dense(128, activation="relu", name="hidden_1"),
        layers.Dense(64, activation="tanh", name="hidden_2"),
        layers.Dense(10, activation="softmax", name="output"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    # 1. Watching the layers while it trains (epoch hooks only: the fused C path stays on).
    monitor = pynn.callbacks.ActivationMonitor(x_train[:256])
    history = model.fit(x_train, y_train, epochs=15, validation_split=0.1, verbose=0,
                        callbacks=[monitor])
    h = history.history
    print("               |    hidden_1 (relu)    |      hidden_2 (tanh)")
    print("epoch  val_acc | active  dead  update | active  saturated  update")
    for e in range(len(history.epoch)):
        print(f"{e + 1:5d}  {h['val_accuracy'][e]:7.3f} | {h['hidden_1/active_fraction'][e]:6.3f} "
              f"{h['hidden_1/dead_units'][e]:5d}  {h['hidden_1/update_ratio'][e]:6.3f} | "
              f"{h['hidden_2/active_fraction'][e]:6.3f} {h['hidden_2/saturated_fraction'][e]:10.3f}  "
              f"{h['hidden_2/update_ratio'][e]:6.3f}")
    never = np.flatnonzero(monitor.unit_activity["hidden_1"][-1] == 0)
    print(f"hidden_1 units that never fired on the 256 sample images in the last epoch: "
          f"{never.tolist() or 'none'}")

    # 2. Which neurons fired for one image?
    index = 7
    image = x_test_flat[index]
    print(f"\nTest image {index} (label {y_test[index]}):")
    show_image(x_test[index])
    outputs = model.activations(image)          # one array per layer, for this one image
    for layer, out in zip(model.layers, outputs):
        if layer.name == "output":
            print("  output: " + "  ".join(f"{d}:{p:.2f}" for d, p in enumerate(out)))
            print(f"  predicted {int(np.argmax(out))} with probability {out.max():.2f}")
        else:
            show_units(layer.name, out, out > 0)


if __name__ == "__main__":
    main()
