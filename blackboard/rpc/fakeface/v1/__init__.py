"""Generated gRPC code for fakeface.v1 (do not edit; run `python -m blackboard.rpc.generate`)."""
