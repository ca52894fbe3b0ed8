"""Generated gRPC code, by proto package (see blackboard/rpc/generate.py)."""
