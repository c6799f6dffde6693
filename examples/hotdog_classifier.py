#!/usr/bin/env python3
"""Hot dog / not hot dog: a binary image classifier trained from a folder of images.

    python examples/hotdog_classifier.py [IMAGE_DIR] [--epochs N] [--size PIXELS] [--output DIR]

IMAGE_DIR holds one subfolder per class, for example

    IMAGE_DIR/hot_dog/*.jpg
    IMAGE_DIR/not_hot_dog/*.jpg

(any two folder names; the class of label 1 is the second in alphabetical order).  As the
TensorFlow image-classification tutorial does it: the folder streams through
pynn.utils.image_dataset_from_directory (decoded and resized on background threads, 20%
held out for validation, pixels 0..255), the model starts with an augmentation block
(RandomFlip, RandomRotation, RandomZoom: active in training only) and Rescaling(1/255),
and a small CNN with one sigmoid output is trained with binary cross-entropy.  The
trained model and a plot of its history are saved in --output (default ./hotdog_output).
Without IMAGE_DIR the script first draws a small labelled folder of synthetic pictures (a
sausage in a bun vs. other shapes) into a temporary directory, so it runs without any
download.  Needs Pillow (pip install 'pynn[image]'); the plot needs matplotlib.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import pynn


def draw_synthetic_folder(root, per_class=120, size=64, seed=0):
    """root/hot_dog and root/not_hot_dog with `per_class` PNG and JPEG pictures each."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)

    def background():
        colour = tuple(int(c) for c in rng.integers(150, 256, 3))
        return Image.new("RGB", (size, size), colour)

    def hot_dog():
        img = background()
        d = ImageDraw.Draw(img)
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        length, thick = rng.uniform(0.55, 0.8) * size, rng.uniform(0.16, 0.24) * size
        bun = tuple(int(c) for c in (rng.integers(200, 240), rng.integers(150, 190), rng.integers(70, 110)))
        d.ellipse([cx - length / 2, cy - thick, cx + length / 2, cy + thick], fill=bun)
        sausage = tuple(int(c) for c in (rng.integers(150, 200), rng.integers(40, 80), rng.integers(20, 50)))
        d.ellipse([cx - length / 2 - 3, cy - thick / 2.5, cx + length / 2 + 3, cy + thick / 2.5], fill=sausage)
        return img.rotate(float(rng.uniform(-40, 40)), fillcolor=img.getpixel((0, 0)))

    def not_hot_dog():
        img = background()
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.uniform(0, 0.6, 2) * size
            w, h = rng.uniform(0.2, 0.4, 2) * size
            colour = tuple(int(c) for c in (rng.integers(0, 120), rng.integers(80, 220), rng.integers(80, 255)))
            shape = d.ellipse if rng.random() < 0.5 else d.rectangle
            shape([x0, y0, x0 + w, y0 + h], fill=colour)
        return img

    for name, draw in (("hot_dog", hot_dog), ("not_hot_dog", not_hot_dog)):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            ext = "png" if i % 2 else "jpg"
            draw().save(os.path.join(root, name, f"{name}_{i:03d}.{ext}"))
    return root


def build_model(size):
    L = pynn.layers
    data_augmentation = pynn.Sequential([
        L.RandomFlip("horizontal"),
        L.RandomRotation(0.1),
        L.RandomZoom(0.1),
    ], name="data_augmentation")
    return pynn.Sequential([
        L.Input((size, size, 3)),
        data_augmentation,                        # training only: the identity in predict
        L.Rescaling(1.0 / 255),
        L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(32, 3, activation="relu"), L.GlobalAveragePooling2D(),
        L.Dropout(0.2),
        L.Dense(32, activation="relu"),
        L.Dense(1, activation="sigmoid"),        # P(second class, e.g. "not_hot_dog")
    ], name="hotdog_cnn")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("directory", nargs="?", help="folder with one subfolder of images per class "
                                                "(default: draw a synthetic one)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=32, help="images are resized to SIZE x SIZE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="hotdog_output",
                   help="where the trained model and the history plot go")
    args = p.parse_args(argv)
    pynn.utils.set_random_seed(args.seed)

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or draw_synthetic_folder(os.path.join(scratch, "food"),
                                                            seed=args.seed)
        train, val = pynn.utils.image_dataset_from_directory(
            directory, image_size=(args.size, args.size), batch_size=32, label_mode="binary",
            validation_split=0.2, subset="both", seed=args.seed)
        class_names = train.class_names
        if len(class_names) != 2:
            sys.exit(f"expected two class folders, found {class_names}")

        model = build_model(args.size)
        model.compile(optimizer=pynn.optimizers.Adam(learning_rate=0.002),
                      loss="binary_crossentropy", metrics=["accuracy"])
        model.summary()
        history = model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
        loss, accuracy = model.evaluate(val, verbose=0)
        images, labels = next(iter(val))
        p_second = model.predict(images[:5], verbose=0)[:, 0]

    print(f"validation accuracy: {accuracy:.3f} (loss {loss:.4f})")
    for prob, label in zip(p_second, labels[:5, 0]):
        guess = class_names[int(prob > 0.5)]
        print(f"  {guess:12s} (p={prob:.2f})  truth: {class_names[int(label)]}")
    os.makedirs(args.output, exist_ok=True)
    saved = os.path.join(args.output, "hotdog.pynn")
    model.save(saved)
    print(f"model saved to {saved} (pynn.load_model reads it back)")
    try:
        plot = os.path.join(args.output, "history.png")
        pynn.utils.plot_history(history, plot, title="hot dog / not hot dog")
        print(f"training history plotted in {plot}")
    except ImportError:
        print("no history plot: matplotlib is not installed (pip install 'pynn[plot]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
