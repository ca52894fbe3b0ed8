"""The detector's web page: drop a screenshot or a clip, see each face's verdict, report mistakes,
take away an evidence report. Served by `fakeface serve` next to the gRPC port (`--http-port`)."""


__all__ = [
]
