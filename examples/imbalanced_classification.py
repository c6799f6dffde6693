#!/usr/bin/env python3
"""Imbalanced classification, as keras.io's "Imbalanced classification: credit card fraud
detection" (fchollet) does it, run by pynn.

    python examples/imbalanced_classification.py [creditcard.csv] [--epochs N]

With the Kaggle file (https://www.kaggle.com/mlg-ulb/creditcardfraud/) the script reads it
exactly as the keras.io example does.  Without it, the rare class is made from the digits
bundled with pynn: "fraud" is a handwritten 8, kept at about 4% of the samples, and the
features are the 64 pixels.  From "Prepare a validation set" on, the code is keras.io's,
with `import pynn as keras`: class_weight gives each class the same total weight, and
the confusion-matrix metrics (fn, fp, tn, tp, precision, recall) show the trade-off.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import pynn as keras


def load_kaggle_csv(fname):
    """keras.io's own loading code."""
    all_features = []
    all_targets = []
    with open(fname) as f:
        for i, line in enumerate(f):
            if i == 0:
                print("HEADER:", line.strip())
                continue  # Skip header
            fields = line.strip().split(",")
            all_features.append([float(v.replace('"', "")) for v in fields[:-1]])
            all_targets.append([int(fields[-1].replace('"', ""))])
    return np.array(all_features, dtype="float32"), np.array(all_targets, dtype="uint8")


def rare_digits(rate=0.04, seed=0):
    """The bundled digits as a fraud-like problem: 8s (about `rate` of the samples) against
    every other digit, shuffled, as float32 features and uint8 (n, 1) targets."""
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x = np.concatenate([x_train, x_test]).reshape(-1, 64).astype("float32")
    y = np.concatenate([y_train, y_test])
    rng = np.random.default_rng(seed)
    negatives = np.flatnonzero(y != 8)
    positives = np.flatnonzero(y == 8)
    keep = rng.choice(positives, max(2, int(len(negatives) * rate)), replace=False)
    order = rng.permutation(np.concatenate([negatives, keep]))
    return x[order], (y[order] == 8).astype("uint8").reshape(-1, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", help="the Kaggle creditcard.csv (optional)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--checkpoints", default=None,
                        help="folder for the per-epoch model files (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.csv:
        features, targets = load_kaggle_csv(args.csv)
    else:
        features, targets = rare_digits()
    print("features.shape:", features.shape)
    print("targets.shape:", targets.shape)

    # ---- from here on: keras.io's example ---------------------------------------------
    num_val_samples = int(len(features) * 0.2)
    train_features = features[:-num_val_samples]
    train_targets = targets[:-num_val_samples]
    val_features = features[-num_val_samples:]
    val_targets = targets[-num_val_samples:]

    print("Number of training samples:", len(train_features))
    print("Number of validation samples:", len(val_features))

    counts = np.bincount(train_targets[:, 0])
    print(
        "Number of positive samples in training data: {} ({:.2f}% of total)".format(
            counts[1], 100 * float(counts[1]) / len(train_targets)
        )
    )

    weight_for_0 = 1.0 / counts[0]
    weight_for_1 = 1.0 / counts[1]

    mean = np.mean(train_features, axis=0)
    train_features -= mean
    val_features -= mean
    std = np.std(train_features, axis=0)
    std[std == 0] = 1.0          # (pynn's digits have blank corner pixels; the Kaggle data has none)
    train_features /= std
    val_features /= std

    model = keras.Sequential(
        [
            keras.Input(shape=(train_features.shape[-1],)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.summary()

    metrics = [
        keras.metrics.FalseNegatives(name="fn"),
        keras.metrics.FalsePositives(name="fp"),
        keras.metrics.TrueNegatives(name="tn"),
        keras.metrics.TruePositives(name="tp"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
    ]

    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=metrics
    )

    folder = args.checkpoints or tempfile.mkdtemp(prefix="pynn-fraud-")
    callbacks = [
        keras.callbacks.ModelCheckpoint(os.path.join(folder, "fraud_model_at_epoch_{epoch}.keras"))
    ]
    class_weight = {0: weight_for_0, 1: weight_for_1}

    history = model.fit(
        train_features,
        train_targets,
        batch_size=2048,
        epochs=args.epochs,
        verbose=2,
        callbacks=callbacks,
        validation_data=(val_features, val_targets),
        class_weight=class_weight,
    )
    last = {k: v[-1] for k, v in history.history.items()}
    print(f"\nOut of {len(val_features)} validation samples ({int(val_targets.sum())} positive): "
          f"{last['val_tp']:.0f} caught, {last['val_fn']:.0f} missed, "
          f"{last['val_fp']:.0f} flagged wrongly.")
    return history


if __name__ == "__main__":
    main(sys.argv[1:])
