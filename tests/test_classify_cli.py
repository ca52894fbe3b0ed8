"""`fakeface classify` in-process (the ensemble in the test process) and its error messages.

The --server mode runs in tests/test_server.py against that module's server, so the suite
starts one ensemble per mode instead of two.
"""

from __future__ import annotations

import json
import socket

import cv2
import pytest

from blackboard import classify_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory, face_rgb):
    folder = tmp_path_factory.mktemp("classify-inputs")
    photo = folder / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    text = folder / "notes.png"
    text.write_text("not an image")
    return {"photo": photo, "text": text, "folder": folder}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_file_is_a_message_not_a_traceback(capsys, files):
    code = classify_cli.main([str(files["folder"] / "nope.jpg"), "--server", "127.0.0.1:1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "nope.jpg: no such file" in err and "Traceback" not in err + out


def test_unreachable_server_says_what_to_do(capsys, files):
    port = free_port()
    code = classify_cli.main([str(files["photo"]), "--server", f"127.0.0.1:{port}", "--timeout", "5"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"cannot reach server at 127.0.0.1:{port}: is `fakeface serve` running?" in err
    assert "Traceback" not in err + out


def test_heatmaps_need_annotate(capsys, files):
    assert classify_cli.main([str(files["photo"]), "--heatmaps"]) == 2
    assert "--annotate" in capsys.readouterr().err


def test_missing_bundle_names_the_fix(capsys, files, tmp_path):
    code = classify_cli.main([str(files["photo"]), "--bundle", str(tmp_path / "no-bundle")])
    err = capsys.readouterr().err
    assert code == 2 and "--bundle" in err and "Traceback" not in err


@pytest.mark.slow
def test_in_process_table_annotation_and_heatmaps(capsys, files, tiny_bundle, tmp_path):
    import ray

    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    try:
        out_png = tmp_path / "annotated.png"
        code = classify_cli.main([str(files["photo"]), str(files["text"]), "--bundle", str(tiny_bundle),
                                  "--annotate", str(out_png), "--heatmaps"])
    finally:
        ray.shutdown()
    out, err = capsys.readouterr()
    assert code == 2, err  # the text file is bad input; the photo is still classified
    assert "notes.png" in err and "not a decodable image" in err and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["file", "face", "verdict", "p_fake", "thr"]
    assert {"custom", "lenet", "vgg16"} <= {w.split()[0] for w in lines[0].split("  ") if w.strip().endswith("p/w")}
    row = next(line for line in lines if line.startswith("astronaut.png"))
    assert row.split()[1] == "#0" and row.split()[2] in ("real", "fake")
    annotated = sorted(tmp_path.glob("annotated-*astronaut.png"))
    assert len(annotated) == 1
    image = cv2.imread(str(annotated[0]))
    # The photo (512 px) plus one row of three 160 px Grad-CAM tiles below it.
    assert image.shape[0] >= 512 + 160 and image.shape[1] == 512


def test_json_view_drops_heatmap_bytes():
    result = [{"file": "a.png", "kind": "image", "faces": [{"index": 0, "heatmaps": {"custom": b"\x89PNG"}}]}]
    text = json.dumps(classify_cli.json_ready(result))
    assert "heatmaps" not in text
