"""Pixels in, faces out: decoding images and videos, face detection and alignment, tracking,
annotation and heat maps. Imports only `agents` (for heat maps of the agents' models)."""
