"""The CNNs' training augmentation (`training.augment`): darkening saturates, JPEG is a real JPEG of the RGB."""

from __future__ import annotations

import cv2
import numpy as np

from training.augment import AugmentConfig, augment

STILL = dict(flip=0.0, max_shift=0.0, max_rotate=0.0, max_scale=0.0, contrast=0.0, blur=0.0)


def test_darkening_keeps_black_black_and_brightening_lifts_it():
    black = np.zeros((32, 32, 3), np.uint8)
    config = AugmentConfig(**STILL, brightness=0.15, jpeg=0.0)
    outs = [augment(black, np.random.default_rng(seed), config) for seed in range(40)]
    darkened = [o for o in outs if o.max() == 0]
    assert 10 <= len(darkened) <= 30  # about half the draws darken; those leave black black
    assert all(o.max() <= round(0.15 * 255) and (o == o[0, 0]).all() for o in outs)


def test_the_jpeg_augmentation_is_the_rgb_pictures_own_jpeg():
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    config = AugmentConfig(**STILL, brightness=0.0, jpeg=1.0, jpeg_quality=(60, 60))
    out = augment(image, np.random.default_rng(1), config)
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 60])
    expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, expected)
