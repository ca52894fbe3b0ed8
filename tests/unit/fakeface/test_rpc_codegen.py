"""The committed gRPC code matches what protoc generates from proto/ today."""

from __future__ import annotations

import importlib

from fakeface.rpc import generate


def test_generated_code_is_up_to_date(tmp_path):
    fresh = generate.generate(tmp_path)
    committed = generate.generated_files(generate.REPO)
    assert len(fresh) == len(committed) == 3
    for new, old in zip(fresh, committed):
        assert old.is_file(), f"{old} is missing: run `python -m fakeface.rpc.generate`"
        assert new.read_text() == old.read_text(), (
            f"{old.relative_to(generate.REPO)} is stale: run `python -m fakeface.rpc.generate`"
        )


def test_generated_modules_import_by_package_path():
    pb2 = importlib.import_module("fakeface.rpc.fakeface.v1.detector_pb2")
    grpc_mod = importlib.import_module("fakeface.rpc.fakeface.v1.detector_pb2_grpc")
    service = pb2.DESCRIPTOR.services_by_name["Detector"]
    assert service.full_name == "fakeface.v1.Detector"
    assert {m.name for m in service.methods} == {"Classify", "ClassifyStream", "Feedback", "GetModelInfo"}
    assert hasattr(grpc_mod, "DetectorStub") and hasattr(grpc_mod, "add_DetectorServicer_to_server")
    assert not (generate.REPO / "proto" / "__init__.py").exists()
