"""`fakeface serve`: the gRPC server, its servicer, admission, authentication, rate limits and
metrics, in front of the Ray Serve ensemble (`blackboard.ensemble`)."""
