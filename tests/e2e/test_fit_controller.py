"""`fakeface fit-controller --ray-address`: its votes collected on Ray Data, by the same stages."""

from __future__ import annotations

import cv2
import numpy as np

from training.votes import collect_votes


def test_votes_on_ray_data_match_the_in_process_ones(ray_session, tiny_bundle, tmp_path):
    import ray

    rng = np.random.default_rng(3)
    paths = []
    for i, (h, w) in enumerate([(224, 224), (160, 200), (300, 280), (224, 224), (250, 250)]):
        small = rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
        paths.append(tmp_path / f"crop{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths.insert(1, tmp_path / "broken.png")
    here = collect_votes(tiny_bundle, paths, batch_size=4, progress=False, use_cache=False)
    on_ray = collect_votes(tiny_bundle, paths, batch_size=4, progress=False, use_cache=False,
                           ray_address=ray.get_runtime_context().gcs_address)
    assert ray.is_initialized()  # the session's Ray was joined, not stopped
    assert np.array_equal(np.isnan(on_ray), np.isnan(here)) and np.isnan(here[1]).all()
    # The same blocks and forward passes; only the actors' thread counts differ from this process.
    np.testing.assert_allclose(on_ray, here, rtol=0, atol=1e-6)
