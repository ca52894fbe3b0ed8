"""Pixels in, faces out: decoding, degradations, detection and video (shared by agents and services)."""
