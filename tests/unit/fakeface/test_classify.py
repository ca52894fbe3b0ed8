"""`fakeface classify` in-process (the ensemble in the test process) and its error messages.

The --server mode runs in tests/e2e/test_server.py against that module's server, so the suite
starts one ensemble per mode instead of two.
"""

from __future__ import annotations

import json

import cv2
import pytest
from processes import descendants, wait_gone

from blackboard.ray_runtime import free_ports
from fakeface import classify as classify_cli
@pytest.fixture(scope="module")
def files(tmp_path_factory, face_photo):
    folder = tmp_path_factory.mktemp("classify-inputs")
    text = folder / "notes.png"
    text.write_text("not an image")
    return {"photo": face_photo, "text": text, "folder": folder}


def test_missing_file_is_a_message_not_a_traceback(capsys, files):
    code = classify_cli.main([str(files["folder"] / "nope.jpg"), "--server", "127.0.0.1:1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "nope.jpg: no such file" in err and "Traceback" not in err + out


def test_unreachable_server_says_what_to_do(capsys, files):
    (port,) = free_ports(1)
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
def test_in_process_table_annotation_and_heatmaps(capsys, files, tiny_bundle, tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # In-process: a one-off answer starts no Ray.
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("classify without --ray-address started Ray"))
    out_png = tmp_path / "annotated.png"
    code = classify_cli.main([str(files["photo"]), str(files["text"]), "--bundle", str(tiny_bundle),
                              "--annotate", str(out_png), "--heatmaps"])
    out, err = capsys.readouterr()
    assert code == 2, err  # the text file is bad input; the photo is still classified
    assert "notes.png" in err and "not a decodable image" in err and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["file", "face", "verdict", "p_fake", "thr"]
    assert {"custom", "lenet", "vgg16"} <= {w.split()[0] for w in lines[0].split("  ") if w.strip().endswith("p/w")}
    row = next(line for line in lines if line.startswith("astronaut.png"))
    assert row.split()[1] == "#0" and row.split()[2] in ("real", "fake", "uncertain")  # uncertain: borderline
    annotated = sorted(tmp_path.glob("annotated-*astronaut.png"))
    assert len(annotated) == 1
    image = cv2.imread(str(annotated[0]))
    # The tiny bundle's agents are the registered ones, whose maps were measured to show no location:
    # under the photo (512 px) a line per agent says so instead of a tile.
    assert image.shape[0] >= 512 + 3 * 15 and image.shape[1] == 512
    below = image[512:].astype(int)
    assert (below < 128).any() and not (below[..., 2] > below[..., 1] + 60).any()  # dark text, no JET overlay


def test_a_clip_without_a_face_says_how_large_a_face_must_be(capsys, tiny_bundle, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    video = tmp_path / "empty-room.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 360))
    for i in range(10):
        writer.write(np.full((360, 640, 3), 60 + 10 * i, np.uint8))
    writer.release()
    assert classify_cli.main([str(video), "--bundle", str(tiny_bundle), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["verdict"] == "no face" and result["frames_sampled"] == 2
    assert result["reason"] == ("no face found in the sampled frames (the detector looks for faces of about 32 px "
                                "and larger in a 640x360 frame)")


def test_json_view_drops_heatmap_bytes():
    result = [{"file": "a.png", "kind": "image", "faces": [{"index": 0, "heatmaps": {"custom": b"\x89PNG"}}]}]
    text = json.dumps(classify_cli.json_ready(result))
    assert "heatmaps" not in text


# ----------------------------------------------------------------- CLI conventions (issue 13)

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def fakeface(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "fakeface.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_a_text_file_is_rejected_before_anything_starts(files, monkeypatch):
    from fakeface import client
    # Nothing may start (no models, no Ray) for an input that cannot be classified.
    monkeypatch.setattr(client, "LocalDetector", lambda *a, **k: pytest.fail("models loaded for a text file"))
    start = time.monotonic()
    code = classify_cli.main([str(files["text"])])
    assert code == 2
    assert time.monotonic() - start < 2


def test_annotate_into_a_missing_folder_is_refused(capsys, files, tmp_path):
    code = classify_cli.main([str(files["photo"]), "--annotate", str(tmp_path / "nope" / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and not (tmp_path / "nope").exists()


@pytest.mark.parametrize("target, reason", [("folder", "is a folder"), ("o.txt", "cannot write '.txt' images")])
def test_an_annotate_path_that_cannot_be_written_is_refused_before_anything_loads(
        capsys, files, tmp_path, monkeypatch, target, reason):
    from fakeface import client

    monkeypatch.setattr(client, "LocalDetector", lambda *a, **k: pytest.fail("models loaded for a bad --annotate"))
    (tmp_path / "folder").mkdir()
    code = classify_cli.main([str(files["photo"]), "--annotate", str(tmp_path / target)])
    err = capsys.readouterr().err
    assert code == 2 and reason in err and "Traceback" not in err


def test_an_annotation_that_fails_to_write_keeps_the_verdict(capsys, files, tiny_bundle, tmp_path, monkeypatch):
    import vision.annotate

    def refuse(path, bgr):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(vision.annotate, "write_image", refuse)
    code = classify_cli.main([str(files["photo"]), "--bundle", str(tiny_bundle), "--json",
                              "--annotate", str(tmp_path / "o.png")])
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert code == 2 and row["faces"] and "annotate_error" in row and "annotated" not in row
    assert "could not be written to" in err and "choose another --annotate path" in err and "Traceback" not in err


def test_version_and_help_conventions():
    version = fakeface("--version")
    assert version.returncode == 0 and version.stdout.startswith("fakeface ")
    check = ("import sys; from fakeface.cli import main\n"
             "for cmd in ('serve', 'classify', 'batch', 'dataset'):\n"
             "    try:\n"
             "        main([cmd, 'build', '--help'] if cmd == 'dataset' else [cmd, '--help'])\n"
             "    except SystemExit:\n"
             "        pass\n"
             "print('TF-IMPORTED' if 'tensorflow' in sys.modules else 'no-tf')\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("no-tf")
    assert out.stdout.count("(default:") >= 20  # every command shows its defaults
    assert "--min-face-size" in out.stdout and "--fps" in out.stdout


def test_dataset_build_without_real_and_fake_exits_2(tmp_path):
    (tmp_path / "in" / "misc").mkdir(parents=True)
    (tmp_path / "in" / "misc" / "a.txt").write_text("x")
    result = fakeface("dataset", "build", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "real/ and fake/" in result.stderr
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_server_down_mid_video_is_a_clean_error_not_sigabrt(tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(20):
        writer.write(__import__("numpy").full((64, 64, 3), i * 10, dtype="uint8"))
    writer.release()
    result = fakeface("classify", str(video), "--server", f"127.0.0.1:{free_ports(1)[0]}", "--timeout", "3")
    assert result.returncode == 1, result.stderr
    assert "cannot reach server" in result.stderr and "terminate called" not in result.stderr


@pytest.mark.slow
def test_sigterm_during_start_up_stops_cleanly(tiny_bundle, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--bundle", str(tiny_bundle), "--port",
                             "0", "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    def ray_started() -> bool:  # Ray's own processes, not the reaper that is started before them
        for pid in descendants(proc.pid):
            try:
                if b"ray_reaper" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:  # gone meanwhile
                continue
        return False

    end = time.monotonic() + 120
    while not ray_started() and time.monotonic() < end:  # Ray is starting
        time.sleep(0.2)
    time.sleep(2)
    seen = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    # 0: our handler drained; 15: Ray's own handler (installed while ray.init runs) exited.
    assert proc.wait(60) in (0, signal.SIGTERM)
    assert "Traceback" not in proc.stderr.read()
    assert wait_gone(seen, 30) == set()


def test_the_detector_preloads_only_for_inputs_that_will_run_it(files, face_crop, tmp_path):
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR))
    from vision.faces import will_detect

    assert not will_detect([crop], "auto")  # a 224 px crop is used whole
    assert will_detect([crop, files["photo"]], "auto")  # the 512 px photo is searched
    assert will_detect([crop], "on")
    assert not will_detect([files["photo"]], "off")
    assert will_detect([tmp_path / "clip.mp4"], "auto")


def test_a_preloaded_detector_is_the_one_the_first_case_uses(tiny_bundle, face_rgb, monkeypatch):
    from blackboard import inprocess

    made = []

    class Counting(inprocess.DetectorWorker):
        def __init__(self, **kwargs):
            made.append(self)
            super().__init__(**kwargs)

    monkeypatch.setattr(inprocess, "DetectorWorker", Counting)
    board = inprocess.InProcessBoard(tiny_bundle, preload_detector=True)
    try:
        assert board._detector_job is not None  # loading started with the agents, before any case
        board._detector_job.result(timeout=120)
        assert len(made) == 1
        case = board.classify(face_rgb, detect="auto", source="astronaut", deadline_s=60)
        assert len(case.faces) == 1 and len(made) == 1 and board._detector is made[0]
    finally:
        board.shutdown()
