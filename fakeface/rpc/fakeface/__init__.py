"""Generated gRPC code, by proto package (see fakeface/rpc/generate.py)."""
