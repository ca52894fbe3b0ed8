"""What a CNN learned from scratch on gan-faces' own train split reaches, by grouped cross-validation.

`bench_gan_ceiling.py` measures hand-made features on ``../shared/data/gan-faces`` (FFHQ photos
vs StyleGAN faces, 256 px JPEG q75): ≤ 0.80 AUC. This asks the same of a learned representation,
with nothing but gan-faces' 1 360 train images (the test split is never read) and no pretrained
weights (none can be downloaded here): a small VGG-like CNN (four blocks of two 3×3 convolutions
with batch norm, 16-128 filters, global average pooling, dropout 0.3), Adam 1e-3 with a cosine
decay, batch 32, class-balanced, random horizontal flips, trained from random weights per fold on

* ``whole 128``: the whole image resized to 128 px (area), scaled to -1..1;
* ``npr native, 128 crops``: the image at its own 256 px minus its 2× nearest-neighbour
  down-and-up-sampled copy (the neighbouring-pixel residual of NPR, CVPR 2024), divided by 16,
  trained on random 128 px crops and scored as the mean over the four 128 px quarters.

    PYTHONPATH=. python benchmarks/bench_gan_learned.py [--epochs 20] [--folds 3]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup()

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402

CROP = 128
BATCH = 32


def npr(images: np.ndarray) -> np.ndarray:
    """Each image minus its 2× nearest-neighbour down-and-up-sampled copy, divided by 16."""
    up = np.repeat(np.repeat(images[:, ::2, ::2], 2, axis=1), 2, axis=2)
    return (images - up) / 16.0


def small_cnn(size: int) -> keras.Model:
    """Four blocks of two 3×3 convolutions (batch norm, ReLU) and a max-pool; 16 to 128 filters."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters in (16, 32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def batches(x: np.ndarray, y: np.ndarray, crop: int | None, rng: np.random.Generator):
    """Shuffled batches, each image randomly cropped to ``crop`` (if given) and flipped half the time."""
    order = rng.permutation(len(x))
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        xb = x[idx]
        if crop:
            corners = [rng.integers(0, xb.shape[1] - crop + 1, 2) for _ in idx]
            xb = np.stack([im[r:r + crop, c:c + crop] for im, (r, c) in zip(xb, corners)])
        xb = xb.copy()
        flip = rng.random(len(idx)) < 0.5
        xb[flip] = xb[flip, :, ::-1]
        yield xb, y[idx]


def score(model: keras.Model, x: np.ndarray, crop: int | None) -> np.ndarray:
    """p_fake per image: of the whole input, or the mean over its four ``crop`` px quarters."""
    if not crop:
        return model.predict(x, verbose=0, batch_size=64)[:, 0]
    quarters = [x[:, r:r + crop, c:c + crop] for r in (0, crop) for c in (0, crop)]
    return np.mean([model.predict(q, verbose=0, batch_size=64)[:, 0] for q in quarters], axis=0)


def cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, crop: int | None, epochs: int,
                   folds: int, name: str) -> dict[str, object]:
    """Out-of-fold p_fake of a network trained from random weights per grouped fold; its AUCs."""
    p = np.zeros(len(y))
    per_fold, start = [], time.perf_counter()
    for fold, (tr, te) in enumerate(StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(x, y, groups)):
        keras.utils.set_random_seed(fold)
        model = small_cnn(CROP)
        steps = epochs * int(np.ceil(len(tr) / BATCH))
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                      loss="binary_crossentropy")
        rng = np.random.default_rng(fold)
        weight = {c: len(tr) / 2 / (y[tr] == c).sum() for c in (0, 1)}
        for _ in range(epochs):
            for xb, yb in batches(x[tr], y[tr], crop, rng):
                model.train_on_batch(xb, yb, sample_weight=np.where(yb == 1, weight[1], weight[0]))
        p[te] = score(model, x[te], crop)
        per_fold.append(float(roc_auc_score(y[te], p[te])))
        print(f"{name}: fold {fold} AUC {per_fold[-1]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return {"input": name, "cv_auc": float(roc_auc_score(y, p)), "fold_auc": per_fold,
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="gan_learned.json")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gan-faces")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args(argv)

    meta = pd.read_csv(args.data / "metadata.csv")
    train = meta[meta["split"] == "train"].reset_index(drop=True)  # the test split is never read
    y = (train["label"] == "fake").to_numpy(np.float32)
    images = np.stack([cv2.cvtColor(cv2.imread(str(args.data / p)), cv2.COLOR_BGR2RGB)
                       for p in train["path"]]).astype(np.float32)
    inputs = {
        "whole 128": (np.stack([cv2.resize(im, (CROP, CROP), interpolation=cv2.INTER_AREA) for im in images])
                      / 127.5 - 1.0, None),
        "npr native, 128 crops": (npr(images), CROP),
    }
    rows = [cross_validate(x, y, train["group"].to_numpy(), crop, args.epochs, args.folds, name)
            for name, (x, crop) in inputs.items()]
    text = "\n".join(["| input | grouped CV AUC | folds |", "|---|---|---|"] +
                     [f"| {r['input']} | {r['cv_auc']:.3f} | {', '.join(f'{a:.3f}' for a in r['fold_auc'])} |"
                      for r in rows])
    print(text)
    write_json(args.out, {**stamp(argv), "data": args.data.name, "train_rows": int(len(y)),
                          "epochs": args.epochs, "folds": args.folds, "results": rows}, markdown=text)


if __name__ == "__main__":
    main(sys.argv[1:])
