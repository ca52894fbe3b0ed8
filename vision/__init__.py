"""Pixels in, faces out: decoding, face finding, cropping, and per-face picture statistics."""
