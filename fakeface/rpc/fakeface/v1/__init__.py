"""Generated gRPC code for fakeface.v1 (do not edit; run `python -m fakeface.rpc.generate`)."""
