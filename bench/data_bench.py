#!/usr/bin/env python3
"""Images at scale (issue 12): pynn's streaming image datasets beside torchvision (and
tf.data when TensorFlow is installed), in one run.

Sections (select with --only; all run by default):
  decode   decode + resize a folder of JPEGs (256x256 sources, 64x64 target), batches of
           32, images per second: pynn.utils.image_dataset_from_directory vs
           torchvision.datasets.ImageFolder + DataLoader(num_workers=2) (and
           tf.keras.utils.image_dataset_from_directory if TensorFlow is installed);
           target: pynn >= 1.0x the faster one
  train    one epoch of a small CNN (the TensorFlow image tutorial's, on 64x64 images)
           streamed from that folder vs the same epoch from the same images already in
           memory as arrays; target: streamed <= 1.15x (with the decode section, also the
           bound that decoding alone sets on this machine)
  memory   peak RSS while streaming a generated folder of 10,000 and of 100,000 small
           images (each size in a fresh process); target: < 400 MB and not growing

The folders are generated once under --workdir (default /tmp/pynn-data-bench) and kept.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/data_bench.py [--quick]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

DECODE_TARGET, TRAIN_TARGET, MEMORY_LIMIT_MB = 1.0, 1.15, 400


def make_folder(root, n, size, classes=2, quality=90, seed=0):
    """root/class_k/*.jpg: n JPEG photos-like images (smooth colour fields plus noise) of
    size x size, made once (a marker file says the folder is complete)."""
    from PIL import Image
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
    for i in range(n):
        c = i % classes
        a, b, ph = rng.uniform(2, 8, 3)
        base = np.stack([np.sin(a * xx + ph + c), np.cos(b * yy - ph), np.sin(a * yy * b * xx)], -1)
        img = ((base * 0.4 + 0.5) * 255 + rng.normal(0, 12, base.shape)).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(
            os.path.join(root, f"class_{c}", f"{i:06d}.jpg"), quality=quality)
    open(marker, "w").close()
    return root


def peak_rss_mb():
    """This process's peak resident memory: VmHWM of /proc/self/status (Linux), which,
    unlike getrusage's ru_maxrss, does not carry over the parent's peak across exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- decode ------------------------------------------------------------------------------
def pynn_images_per_s(folder, image_size, batch, reps):
    import pynn
    times, n = [], 0
    for _ in range(reps):
        ds = pynn.utils.image_dataset_from_directory(folder, image_size=image_size,
                                                     batch_size=batch, shuffle=False,
                                                     verbose=False)
        t = time.perf_counter()
        n = sum(len(xb) for xb, _ in ds)
        times.append(time.perf_counter() - t)
    return n / statistics.median(times), n


class _ImageFolder:
    """What torchvision.datasets.ImageFolder(transform=Compose([Resize, PILToTensor]))
    does, for a torch install without torchvision (its CPU wheel's ops need a matching
    torch build): sorted class folders, PIL decode, RGB, bilinear resize, a uint8 tensor."""

    def __init__(self, root, size):
        from PIL import Image
        self.Image, self.size = Image, size
        self.classes = sorted(d for d in os.listdir(root)
                              if os.path.isdir(os.path.join(root, d)))
        self.samples = [(os.path.join(root, c, f), k) for k, c in enumerate(self.classes)
                        for f in sorted(os.listdir(os.path.join(root, c)))]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        import torch
        path, label = self.samples[i]
        with open(path, "rb") as f:
            img = self.Image.open(f).convert("RGB")
        img = img.resize(self.size[::-1], self.Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()), label


def torchvision_images_per_s(folder, image_size, batch, reps, workers=2):
    import torch
    try:
        from torchvision import datasets, transforms
        tf = transforms.Compose([transforms.Resize(image_size), transforms.PILToTensor()])

        def make():
            return datasets.ImageFolder(folder, transform=tf)
    except (ImportError, RuntimeError):
        def make():
            return _ImageFolder(folder, image_size)
    times, n = [], 0
    for _ in range(reps):
        ds = make()
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False,
                                             num_workers=workers)
        t = time.perf_counter()
        n = sum(len(xb) for xb, _ in loader)
        times.append(time.perf_counter() - t)
    return n / statistics.median(times), n


def tf_images_per_s(folder, image_size, batch, reps):
    import tensorflow as tf
    times, n = [], 0
    for _ in range(reps):
        ds = tf.keras.utils.image_dataset_from_directory(folder, image_size=image_size,
                                                         batch_size=batch, shuffle=False,
                                                         verbose=False)
        t = time.perf_counter()
        n = sum(int(xb.shape[0]) for xb, _ in ds)
        times.append(time.perf_counter() - t)
    return n / statistics.median(times), n


def run_decode(folder, reps):
    rows = {}
    rows["pynn"] = pynn_images_per_s(folder, (64, 64), 32, reps)
    for name, fn in (("torchvision", torchvision_images_per_s), ("tf.data", tf_images_per_s)):
        try:
            rows[name] = fn(folder, (64, 64), 32, reps)
        except ImportError as exc:
            print(f"  {name}: skipped ({exc})")
    others = {k: v[0] for k, v in rows.items() if k != "pynn"}
    best = max(others.values()) if others else None
    ratio = rows["pynn"][0] / best if best else None
    print("\ndecode + resize to 64x64, batches of 32 (images/s, higher is better)")
    for name, (rate, n) in rows.items():
        print(f"  {name:12s} {rate:10.0f} images/s   ({n} images)")
    if ratio is not None:
        print(f"  pynn / fastest other: {ratio:.2f}x   target >= {DECODE_TARGET:.2f}x   "
              f"{'met' if ratio >= DECODE_TARGET else 'NOT met'}")
    return {"images_per_s": {k: v[0] for k, v in rows.items()}, "ratio": ratio}


# ---- train -------------------------------------------------------------------------------
def small_cnn():
    """The TensorFlow image-classification tutorial's CNN, on 64x64 images, two classes."""
    import pynn
    from pynn import layers
    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([layers.Input((64, 64, 3)), layers.Rescaling(1.0 / 255),
                         layers.Conv2D(16, 3, padding="same", activation="relu"),
                         layers.MaxPooling2D(),
                         layers.Conv2D(32, 3, padding="same", activation="relu"),
                         layers.MaxPooling2D(),
                         layers.Conv2D(64, 3, padding="same", activation="relu"),
                         layers.MaxPooling2D(),
                         layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(2)])
    m.compile("adam", pynn.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def run_train(folder, reps, decode_rate=None):
    """decode_rate: pynn's decode + resize rate (images/s, all cores) from the decode
    section, or None.  With it, the bound decoding alone puts on the ratio is printed: the
    streamed epoch does the in-memory epoch's work and the decoding on the same cores, so
    it takes at least (in-memory time + decoding time) once both keep every core busy."""
    import pynn
    ds = pynn.utils.image_dataset_from_directory(folder, image_size=(64, 64), batch_size=32,
                                                 shuffle=False, verbose=False)
    xs, ys = zip(*ds)
    x, y = np.concatenate(xs), np.concatenate(ys)
    arrays, streamed = [], []
    m1, m2 = small_cnn(), small_cnn()
    m1.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)        # warm-up
    for _ in range(reps):
        t = time.perf_counter()
        m1.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        arrays.append(time.perf_counter() - t)
        ds = pynn.utils.image_dataset_from_directory(folder, image_size=(64, 64),
                                                     batch_size=32, shuffle=False,
                                                     verbose=False)
        t = time.perf_counter()
        m2.fit(ds, epochs=1, shuffle=False, verbose=0)
        streamed.append(time.perf_counter() - t)
    a, s = statistics.median(arrays), statistics.median(streamed)
    ratio = s / a
    print(f"\none epoch of a small CNN, {len(x)} images 64x64x3, batch 32 (s, lower is better)")
    print(f"  arrays in memory {a:8.2f} s\n  streamed         {s:8.2f} s")
    print(f"  streamed / arrays: {ratio:.2f}x   target <= {TRAIN_TARGET:.2f}x   "
          f"{'met' if ratio <= TRAIN_TARGET else 'NOT met'}")
    result = {"arrays_s": a, "streamed_s": s, "ratio": ratio}
    if decode_rate:
        bound = 1.0 + len(x) / decode_rate / a
        print(f"  decoding alone bounds it at >= {bound:.2f}x here ({len(x)} images at "
              f"{decode_rate:.0f} images/s on all cores, beside {a:.2f} s of training)")
        result["decode_bound"] = bound
    return result


# ---- memory ------------------------------------------------------------------------------
def stream_once(folder):
    """(in a child process) stream the folder once; print the peak RSS in MB as JSON."""
    import pynn
    ds = pynn.utils.image_dataset_from_directory(folder, image_size=(32, 32), batch_size=32,
                                                 shuffle=True, seed=1, verbose=False)
    n = sum(len(xb) for xb, _ in ds)
    print(json.dumps({"images": n, "peak_rss_mb": peak_rss_mb()}))


def run_memory(workdir, sizes):
    results = {}
    print("\npeak RSS streaming a folder of small JPEGs (32x32 target), fresh process each")
    for n in sizes:
        folder = make_folder(os.path.join(workdir, f"small-{n}"), n, 48, classes=4)
        out = subprocess.run([sys.executable, __file__, "--stream-once", folder],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[n] = r
        print(f"  {n:7d} images: {r['peak_rss_mb']:7.1f} MB   limit {MEMORY_LIMIT_MB} MB   "
              f"{'met' if r['peak_rss_mb'] < MEMORY_LIMIT_MB else 'NOT met'}")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=("decode", "train", "memory"))
    p.add_argument("--quick", action="store_true",
                   help="2,000 JPEGs instead of 20,000; memory at 2,000 and 10,000")
    p.add_argument("--workdir", default="/tmp/pynn-data-bench")
    p.add_argument("--json")
    p.add_argument("--stream-once", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stream_once:
        stream_once(args.stream_once)
        return 0
    sections = args.only or ["decode", "train", "memory"]
    n = 2000 if args.quick else 20000
    reps = 2 if args.quick else 3
    report = {}
    folder = None
    if "decode" in sections or "train" in sections:
        t = time.perf_counter()
        folder = make_folder(os.path.join(args.workdir, f"jpeg256-{n}"), n, 256)
        print(f"folder of {n} JPEGs 256x256 ready ({time.perf_counter() - t:.0f} s)")
    if "decode" in sections:
        report["decode"] = run_decode(folder, reps)
    if "train" in sections:
        decode_rate = report.get("decode", {}).get("images_per_s", {}).get("pynn")
        report["train"] = run_train(folder, reps, decode_rate)
    if "memory" in sections:
        report["memory"] = run_memory(args.workdir,
                                       (2000, 10000) if args.quick else (10000, 100000))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
